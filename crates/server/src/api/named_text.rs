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

/// Emits a named text resource's API in its module: how its record is [`Shown`], `list_for`,
/// `create_for` and `delete_for` (for the web console and the operator API) and the three `/v1`
/// handlers `list`, `create` and `delete` with their OpenAPI operations. The invocation names the
/// record, its wire row, the typed input, the tag, whether the list has a `total`, each
/// operation's path and description, and how a record becomes its wire row.
macro_rules! named_text_api {
    (
        record = $rec:ident, wire = $wire:ident, input = $new:ident, tag = $tag:tt, total = $total:tt,
        list = $list_path:tt $list_doc:tt, create = $create_doc:tt,
        delete = $delete_path:tt $id:tt $delete_doc:tt,
        to_wire = |$state:ident, $r:ident| $to_wire:expr $(,)?
    ) => {
        impl $crate::api::named_text::Shown for $rec {
            type Wire = $wire;
            const LIST_TOTAL: bool = $total;

            fn to_wire($state: &$crate::AppState, $r: $rec) -> $wire {
                $to_wire
            }
        }

        pub async fn list_for(
            state: &$crate::AppState,
            account_id: &openwinv_store::ids::AccountId,
            q: &$crate::input::Query,
        ) -> $crate::api::Reply<$wire> {
            $crate::api::named_text::list_for::<$rec>(state, account_id, q).await
        }

        pub async fn create_for(
            state: &$crate::AppState,
            account_id: &openwinv_store::ids::AccountId,
            body: &$crate::input::Body,
        ) -> $crate::api::Reply<$wire> {
            $crate::api::named_text::create_for::<$rec>(state, account_id, body).await
        }

        pub async fn delete_for(
            state: &$crate::AppState,
            account_id: &openwinv_store::ids::AccountId,
            id: &str,
        ) -> $crate::api::Reply<$wire> {
            $crate::api::named_text::delete_for::<$rec>(state, account_id, id).await
        }

        #[doc = $list_doc]
        #[utoipa::path(get, path = $list_path, tag = $tag,
            params(("name" = Option<String>, Query, description = "substring"), ("page_no" = Option<u32>, Query),
                ("page_size" = Option<u32>, Query)),
            responses((status = 200, body = openwinv_wire::Envelope<Vec<$wire>>),
                (status = 400, body = openwinv_wire::ErrorEnvelope)))]
        pub async fn list(
            axum::extract::State(state): axum::extract::State<$crate::AppState>,
            axum::Extension(caller): axum::Extension<$crate::auth::Caller>,
            q: $crate::input::Query,
        ) -> $crate::api::Reply<$wire> {
            list_for(&state, &caller.account_id, &q).await
        }

        #[doc = $create_doc]
        #[utoipa::path(post, path = $list_path, tag = $tag, request_body = $crate::service::named_text::$new,
            responses((status = 200, body = openwinv_wire::Envelope<Vec<$wire>>),
                (status = 400, body = openwinv_wire::ErrorEnvelope)))]
        pub async fn create(
            axum::extract::State(state): axum::extract::State<$crate::AppState>,
            axum::Extension(caller): axum::Extension<$crate::auth::Caller>,
            body: $crate::input::Body,
        ) -> $crate::api::Reply<$wire> {
            create_for(&state, &caller.account_id, &body).await
        }

        #[doc = $delete_doc]
        #[utoipa::path(delete, path = $delete_path, tag = $tag, params(($id = String, Path)),
            responses((status = 200, body = openwinv_wire::Envelope<Vec<$wire>>),
                (status = 404, body = openwinv_wire::ErrorEnvelope)))]
        pub async fn delete(
            axum::extract::State(state): axum::extract::State<$crate::AppState>,
            axum::Extension(caller): axum::Extension<$crate::auth::Caller>,
            $crate::input::Path(id): $crate::input::Path<String>,
        ) -> $crate::api::Reply<$wire> {
            delete_for(&state, &caller.account_id, &id).await
        }
    };
}
pub(crate) use named_text_api;
