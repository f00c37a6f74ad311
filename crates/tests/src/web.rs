//! A person's browser over plain HTTP, for the web console's tests: keeps cookies, never follows
//! redirects (so that each answer can be checked), can send htmx's request header.

use std::collections::HashMap;

use reqwest::Method;
use reqwest::header::{HeaderMap, SET_COOKIE};

use crate::Server;

/// A cookie-keeping client of one server, in one language.
pub struct Visitor {
    /// The client (a test may swap in one that trusts a CA; it must not follow redirects).
    pub http: reqwest::Client,
    base: String,
    pub cookies: HashMap<String, String>,
    lang: &'static str,
}

/// One answer.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The `Location` header, or "".
    pub fn location(&self) -> &str {
        self.header("location")
    }

    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    }

    /// The `Set-Cookie` header of the cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().into_iter().find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// The markup of the element whose `id` is given, up to its first `<` (as maud escaped it).
    pub fn text_of(&self, id: &str) -> &str {
        let at = self.body.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {}", self.body));
        let rest = &self.body[at..];
        let start = rest.find('>').unwrap() + 1;
        &rest[start..start + rest[start..].find('<').unwrap()]
    }

    /// The text of the element with this id (tags removed, entities of maud's escaping undone).
    pub fn text(&self, id: &str) -> String {
        let at = self.body.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {}", self.body));
        let start = at + self.body[at..].find('>').unwrap() + 1;
        let mut depth = 0;
        let mut out = String::new();
        let mut rest = &self.body[start..];
        while let Some(lt) = rest.find('<') {
            out.push_str(&rest[..lt]);
            let gt = rest[lt..].find('>').unwrap() + lt;
            let tag = &rest[lt + 1..gt];
            if tag.starts_with('/') {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            } else if !tag.ends_with('/') && !matches!(tag.split(' ').next(), Some("br" | "input" | "meta" | "link")) {
                depth += 1;
            }
            rest = &rest[gt + 1..];
        }
        out.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }
}

impl Visitor {
    /// A visitor of `s` whose browser asks for `lang` (`Accept-Language`).
    pub fn new(s: &Server, lang: &'static str) -> Visitor {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Visitor { http, base: s.endpoint.clone(), cookies: HashMap::new(), lang }
    }

    /// The same browser (cookies and all) visiting another server.
    pub fn on(&self, s: &Server) -> Visitor {
        Visitor { http: self.http.clone(), base: s.endpoint.clone(), cookies: self.cookies.clone(), lang: self.lang }
    }

    /// Sends a request with the kept cookies (and htmx's header when `htmx`); keeps the cookies
    /// the answer sets and forgets those it expires.
    pub async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>, htmx: bool) -> Page {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("accept-language", self.lang);
        let cookie: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !cookie.is_empty() {
            req = req.header("cookie", cookie.join("; "));
        }
        if htmx {
            req = req.header("hx-request", "true");
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let r = req.send().await.expect("HTTP request to the console");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        for c in headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Page { status, headers, body: r.text().await.unwrap_or_default() }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None, false).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form), false).await
    }

    /// Signs a person in with the sign-in form (its pre-session CSRF token first).
    pub async fn sign_in(&mut self, login: &str, password: &str) -> Page {
        let token = self.get("/signin").await.csrf();
        self.post("/signin", &[("csrf", &token), ("login", login), ("password", password)]).await
    }

    /// Signs the operator in with the admin token.
    pub async fn operator_sign_in(&mut self, token: &str) -> Page {
        let csrf = self.get("/admin/signin").await.csrf();
        self.post("/admin/signin", &[("csrf", &csrf), ("token", token)]).await
    }

    /// Signs the operator in with the right token: the answer must send them to `/admin/`.
    pub async fn operator_signed_in(&mut self, token: &str) -> Page {
        let r = self.operator_sign_in(token).await;
        assert_eq!((r.status, r.location()), (303, "/admin/"), "{}", r.body);
        r
    }

    /// Sends each form (a path and its fields) without a CSRF token, with `foreign` (another
    /// session's) and with a made-up one: every answer must be the 403 refusal.
    pub async fn forms_refused_without_csrf(&mut self, forms: &[(&str, Vec<(&str, &str)>)], foreign: &str) {
        for (path, fields) in forms {
            for token in [None, Some(foreign), Some("x")] {
                let mut f = fields.clone();
                if let Some(t) = token {
                    f.push(("csrf", t));
                }
                let r = self.post(path, &f).await;
                assert_eq!(r.status, 403, "{path} with {token:?}: {}", r.body);
            }
        }
    }
}

/// An operator signed in to the console of `s`, and the CSRF token of their forms.
pub async fn operator(s: &Server) -> (Visitor, String) {
    let mut op = Visitor::new(s, "en");
    op.operator_signed_in(&s.admin_token).await;
    let csrf = op.get("/admin/").await.csrf();
    (op, csrf)
}
