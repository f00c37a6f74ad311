//! The browser console opened in place on an instance's page.
//!
//! "Open console" asks the API for a one-time link (`GET /v1/instances/{id}/remote-console`'s
//! handler) and answers with the console page in an `<iframe>`: with htmx the frame is swapped into
//! `#console-slot` and the address bar stays `/instances/{id}`; without script the `POST`'s answer is
//! the instance page with the frame. Either way the link's path is only the frame's `src`: a
//! frame's first load replaces its blank document, so it adds no history entry, and it is sent with
//! `referrerpolicy="no-referrer"`. The server logs the console page's path as it always has (the
//! API's link is the same one). The token is spent by that one load, so the path opens nothing
//! afterwards.
//!
//! The console page allows being framed by this origin only (`frame-ancestors 'self'` in
//! `console.rs`), and the console's pages allow frames from this origin only (`frame-src 'self'`).

use maud::{Markup, html};

use super::Shown;
use super::i18n::Lang;

/// The slot on the instance page, with the console framed when `path` is given.
pub fn slot(lang: Lang, path: Option<&str>) -> Markup {
    html! {
        div id="console-slot" {
            @if let Some(p) = path {
                section class="console-frame" aria-labelledby="h-console" {
                    h2 id="h-console" { (lang.t("console.title")) }
                    p class="muted" { (lang.t("console.note")) }
                    iframe id="console-frame" src=(p) title=(lang.t("console.title")) referrerpolicy="no-referrer" {}
                }
            }
        }
    }
}

/// The slot with the API's refusal (htmx swaps only 2xx answers, so this one is sent as 200).
pub fn refused(e: &Shown) -> Markup {
    html! {
        div id="console-slot" {
            div class="error" role="alert" {
                @if !e.code.is_empty() { strong { (e.code) } " " }
                span class="error-message" { (e.message) }
            }
        }
    }
}
