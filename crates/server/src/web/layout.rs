//! The page shell: header (account, navigation, language switch, sign-out), messages, and the
//! headers every console page is sent with.
//!
//! Security headers: a Content-Security-Policy that allows scripts and styles from this origin
//! only (no inline script, no inline style, no `eval`: htmx is configured with `allowEval` and
//! `includeIndicatorStyles` off), forms posting to this origin only, no framing;
//! `Cache-Control: no-store` (pages show account data), `Referrer-Policy: no-referrer`.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::i18n::Lang;
use super::session::Signed;
use super::{Shown, assets};

/// `frame-src 'self'`: the instance page frames the browser console (`/console/…`, same origin).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                       frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sets the console's security headers on an answer (pages and partials).
pub fn secure_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A partial (htmx swaps it into a page), with the same headers as a page.
pub fn partial(markup: Markup) -> Response {
    let mut r = Html(markup.into_string()).into_response();
    secure_headers(&mut r);
    r
}

/// A hidden CSRF field.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name=(super::csrf::FIELD) value=(token); }
}

/// A status badge (its class names the status, its text is translated).
pub fn badge(lang: Lang, status: &str) -> Markup {
    let key = format!("status.{status}");
    let text = if key_known(lang, &key) { lang.t_owned(&key) } else { status.to_owned() };
    html! { span class={"badge badge-" (status)} data-status=(status) { (text) } }
}

fn key_known(lang: Lang, key: &str) -> bool {
    lang.has(key)
}

pub struct Page {
    lang: Lang,
    title: String,
    signed: Option<Signed>,
    /// Pre-session CSRF token for the language switch of a page without a session.
    pre_csrf: Option<String>,
    active: &'static str,
    error: Option<Shown>,
    notice: Option<String>,
    body: Markup,
    status: StatusCode,
    cookies: Vec<HeaderValue>,
    /// An operator's page (`/admin/`): the operator session's CSRF token.
    operator: Option<String>,
}

impl Page {
    /// A page of a signed-in person; `active` names the navigation entry to highlight.
    pub fn new(s: &Signed, active: &'static str, title: impl Into<String>) -> Page {
        Page {
            lang: s.lang,
            title: title.into(),
            signed: Some(s.clone()),
            pre_csrf: None,
            active,
            error: None,
            notice: None,
            body: html! {},
            status: StatusCode::OK,
            cookies: Vec::new(),
            operator: None,
        }
    }

    /// A page without a session (sign-in, errors).
    pub fn bare(lang: Lang, title: impl Into<String>) -> Page {
        Page {
            lang,
            title: title.into(),
            signed: None,
            pre_csrf: None,
            active: "",
            error: None,
            notice: None,
            body: html! {},
            status: StatusCode::OK,
            cookies: Vec::new(),
            operator: None,
        }
    }

    /// A page of the operator's pages under `/admin/` (their own navigation and sign-out).
    pub fn operator(lang: Lang, csrf: &str, active: &'static str, title: impl Into<String>) -> Page {
        Page { operator: Some(csrf.to_owned()), active, ..Page::bare(lang, title) }
    }

    pub fn pre_csrf(mut self, token: &str) -> Page {
        self.pre_csrf = Some(token.to_owned());
        self
    }

    pub fn body(mut self, body: Markup) -> Page {
        self.body = body;
        self
    }

    /// Shows an API error; the page gets its status.
    pub fn error(mut self, e: Option<Shown>) -> Page {
        if let Some(e) = &e {
            self.status = e.status;
        }
        self.error = e;
        self
    }

    pub fn error_text(mut self, message: &str) -> Page {
        self.error = Some(Shown { status: self.status, code: String::new(), message: message.to_owned() });
        self
    }

    pub fn notice(mut self, text: Option<String>) -> Page {
        self.notice = text;
        self
    }

    pub fn status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }

    pub fn cookie(mut self, value: HeaderValue) -> Page {
        self.cookies.push(value);
        self
    }

    pub fn render(self) -> Response {
        let lang = self.lang;
        let nav: [(&str, &str, &str); 9] = [
            ("dashboard", "/", "nav.dashboard"),
            ("instances", "/instances", "nav.instances"),
            ("volumes", "/volumes", "nav.volumes"),
            ("firewalls", "/firewalls", "nav.firewalls"),
            ("ssh-keys", "/ssh-keys", "nav.ssh_keys"),
            ("scripts", "/scripts", "nav.scripts"),
            ("billing", "/billing", "nav.billing"),
            ("api-keys", "/api-keys", "nav.api_keys"),
            ("api-test", "/api-test", "nav.api_test"),
        ];
        let csrf = self.signed.as_ref().map(|s| s.csrf.clone()).or(self.pre_csrf.clone());
        let markup = html! {
            (DOCTYPE)
            html lang=(lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                    title { (self.title) " · openwinv" }
                    link rel="stylesheet" href=(assets::url("app.css"));
                    script src=(assets::url("vendor/htmx/htmx.min.js")) defer {}
                }
                body {
                    header class="top" {
                        a class="brand" href="/" { "openwinv" }
                        @if let Some(s) = &self.signed {
                            nav aria-label=(lang.t("nav.label")) {
                                ul {
                                    @for (id, href, key) in nav {
                                        li { a href=(href) aria-current=[(id == self.active).then_some("page")] { (lang.t(key)) } }
                                    }
                                }
                            }
                            span class="who" { (s.login) " @ " (s.account_name) }
                        }
                        @if let Some(token) = &self.operator {
                            (super::admin::nav(lang, self.active, token))
                        }
                        @if let Some(token) = &csrf {
                            form class="lang" method="post" action="/lang" {
                                (csrf_field(token))
                                input type="hidden" name="lang" value=(lang.other().code());
                                button type="submit" id="lang-switch" lang=(lang.other().code()) { (lang.t("lang.switch")) }
                            }
                        }
                        @if let Some(s) = &self.signed {
                            form class="signout" method="post" action="/signout" {
                                (csrf_field(&s.csrf))
                                button type="submit" id="signout" { (lang.t("nav.signout")) }
                            }
                        }
                    }
                    main {
                        h1 { (self.title) }
                        @if let Some(n) = &self.notice {
                            p class="notice" role="status" { (n) }
                        }
                        @if let Some(e) = &self.error {
                            div class="error" role="alert" {
                                @if !e.code.is_empty() { strong { (e.code) } " " }
                                span class="error-message" { (e.message) }
                            }
                        }
                        (self.body)
                    }
                }
            }
        };
        let mut resp = (self.status, Html(markup.into_string())).into_response();
        secure_headers(&mut resp);
        for c in self.cookies {
            resp.headers_mut().append(SET_COOKIE, c);
        }
        resp
    }
}
