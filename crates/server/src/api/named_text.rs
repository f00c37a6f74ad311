//! The API half of SSH keys and user scripts: one list, create and delete for both, over
//! [`crate::service::named_text`]; each kind says how a record is shown ([`Shown`]).

use axum::Json;
use openwinv_store::PageQuery;
use openwinv_wire::Envelope;
use openwinv_wire::envelope::Page;
use serde::Serialize;

use super::Reply;
use crate::AppState;
use crate::input::{Body, Encoding, Query};
use crate::service::FromBody;
use crate::service::named_text::{self as svc, NamedResource};

/// How a named text resource is shown on the wire.
pub trait Shown: NamedResource {
    type Wire: Serialize;
    /// Whether its list carries `total` (SSH keys do not [iwinv live], spec §3).
    const LIST_TOTAL: bool;

    fn to_wire(state: &AppState, r: Self) -> Self::Wire;
}

pub async fn list_for<T: Shown>(
    state: &AppState,
    account_id: &openwinv_store::ids::AccountId,
    q: &Query,
) -> Reply<T::Wire> {
    let page = q.page(Page::DEFAULT_SIZE)?;
    let (rows, total) =
        svc::list::<T>(state, account_id, q.str("name"), PageQuery::new(page.page_size, page.offset())).await?;
    let rows = rows.into_iter().map(|r| T::to_wire(state, r)).collect();
    Ok(Json(if T::LIST_TOTAL {
        Envelope::page(rows, page, total as u64)
    } else {
        Envelope::page_without_total(rows, page)
    }))
}

/// Creates one from a body (the API's, an operator's or a console form's).
pub async fn create_for<T: Shown>(
    state: &AppState,
    account_id: &openwinv_store::ids::AccountId,
    body: &Body,
) -> Reply<T::Wire> {
    let new = T::New::from_body(body, Encoding::Json)?;
    let rec = svc::create::<T>(state, account_id, new).await?;
    Ok(Json(Envelope::rows(vec![T::to_wire(state, rec)])))
}

pub async fn delete_for<T: Shown>(
    state: &AppState,
    account_id: &openwinv_store::ids::AccountId,
    id: &str,
) -> Reply<T::Wire> {
    let rec = svc::delete::<T>(state, account_id, id).await?;
    Ok(Json(Envelope::rows(vec![T::to_wire(state, rec)])))
}
