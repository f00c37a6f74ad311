//! What the operator's pages share: a form's fields as an `/admin/v1` body, and what a page shows
//! besides its rows after a request ([`Outcome`]).

use serde_json::{Map, Value};

use super::{Lang, done_notice};
use crate::input::{Body, Query};
use crate::web::Shown;
use crate::web::form::Form;

/// A form's fields as the body of an `/admin/v1` call: each of `fields` sent, not blank, trimmed.
pub(super) fn body_of(form: &Form, fields: &[&str]) -> Body {
    let mut map = Map::new();
    for f in fields {
        if let Some(v) = form.get(f) {
            map.insert((*f).to_owned(), Value::String(v.trim().to_owned()));
        }
    }
    Body(map)
}

static NOTHING_SENT: Form = Form(Vec::new());

/// What a page shows besides its rows: the notice of `?done=`, or the error of a form just sent,
/// with what was sent when its fields are to be filled again.
pub(super) struct Outcome<'f> {
    pub notice: Option<String>,
    pub error: Option<Shown>,
    pub sent: &'f Form,
}

impl Outcome<'static> {
    /// A page asked for with `GET`: the notice `?done=` names, if any.
    pub fn shown(lang: Lang, q: &Query) -> Self {
        Outcome { notice: done_notice(lang, q), error: None, sent: &NOTHING_SENT }
    }

    /// A request that succeeded, with its notice.
    pub fn done(notice: String) -> Self {
        Outcome { notice: Some(notice), error: None, sent: &NOTHING_SENT }
    }

    /// A form without fields to fill again failed.
    pub fn failed(error: impl Into<Shown>) -> Self {
        Outcome { notice: None, error: Some(error.into()), sent: &NOTHING_SENT }
    }
}

impl<'f> Outcome<'f> {
    /// `sent` failed; its fields are filled again.
    pub fn refused(error: impl Into<Shown>, sent: &'f Form) -> Self {
        Outcome { notice: None, error: Some(error.into()), sent }
    }
}
