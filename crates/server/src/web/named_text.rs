//! What the SSH key and user script pages share: a write from a form, then the list with its
//! notice, or the page again with the error.

use axum::response::Response;

use super::form::Form;
use super::{Shown, Signed, csrf, reply, see_other};
use crate::AppState;
use crate::api::named_text::{self as named, Shown as OnWire};
use crate::input::Body;

/// A named text resource's page: the rows, then a notice or an error, and the form as sent to
/// fill again.
pub(super) trait PageFn: AsyncFn(&AppState, &Signed, Option<String>, Option<Shown>, &Form) -> Response {}

impl<F: AsyncFn(&AppState, &Signed, Option<String>, Option<Shown>, &Form) -> Response> PageFn for F {}

/// Creates one from `body`, made of `form`'s fields, once the form's CSRF token is checked; then
/// the list at `path`, or `page` again with the error.
pub(super) async fn create<T: OnWire>(
    (state, s, form): (&AppState, &Signed, &Form),
    body: serde_json::Map<String, serde_json::Value>,
    path: &str,
    page: impl PageFn,
) -> Response {
    if let Some(r) = csrf::check(s, form.get(csrf::FIELD)) {
        return r;
    }
    match reply(named::create_for::<T>(state, &s.account_id, &Body(body)).await) {
        Ok(_) => see_other(&format!("{path}?done=created")),
        Err(e) => page(state, s, None, Some(e.into()), form).await,
    }
}

/// Deletes one, once the form's CSRF token is checked; then the list at `path`, or `page` again
/// with the error.
pub(super) async fn delete<T: OnWire>(
    (state, s, form): (&AppState, &Signed, &Form),
    id: &str,
    path: &str,
    page: impl PageFn,
) -> Response {
    if let Some(r) = csrf::check(s, form.get(csrf::FIELD)) {
        return r;
    }
    match reply(named::delete_for::<T>(state, &s.account_id, id).await) {
        Ok(_) => see_other(&format!("{path}?done=deleted")),
        Err(e) => page(state, s, None, Some(e.into()), &Form::default()).await,
    }
}
