//! Request input: path parameters, query strings and bodies in JSON, `multipart/form-data` or
//! `application/x-www-form-urlencoded`, with numbers as JSON numbers or numeric strings.
//!
//! Every byte a client sends reaches a handler through this module, so the rules of spec §1 are
//! enforced once here rather than per handler: strict URL decoding (a bad `%` escape is refused,
//! `+` is a space), no NUL byte in any text (PostgreSQL cannot store one, and no iwinv field needs
//! one), an empty body counts as no fields whatever its `Content-Type`, and the 1 MiB limit gives
//! 413 in every encoding. Each rejection is the iwinv envelope naming the field at fault.
//! Handlers read fields by name so that their own errors name the field too.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use openwinv_wire::ErrorCode;
use openwinv_wire::envelope::Page;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest request body accepted (spec §1).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The 413 answer to a body past [`BODY_LIMIT`], whatever its encoding.
pub fn too_large() -> ApiError {
    ApiError::param(format!("The request body is larger than {BODY_LIMIT} bytes."))
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// Refuses a NUL byte in a client's text; `what` names the field (`body field `name``).
fn no_nul(what: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::param(format!("The {what} must not contain a NUL byte.")));
    }
    Ok(())
}

/// Decodes one URL-encoded component once: `+` is a space, `%XX` a byte. `None` when a `%` is not
/// followed by two hex digits or the bytes are not UTF-8 (the WHATWG decoder would keep the `%`
/// or replace the bytes, silently storing something the client did not mean).
pub fn url_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `a=1&b=2` decoded strictly; `what` is `query parameter` or `form field`. A NUL byte in a name
/// or value is refused like a bad escape.
pub(crate) fn url_pairs(raw: &[u8], what: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for pair in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let key = url_decode(k).ok_or_else(|| {
            ApiError::param(format!(
                "The {what} name `{}` is not valid URL encoding (a `%` must be followed by two hex digits of UTF-8).",
                String::from_utf8_lossy(k)
            ))
        })?;
        if key.contains('\0') {
            return Err(ApiError::param(format!("A {what} name must not contain a NUL byte.")));
        }
        let value = url_decode(v).ok_or_else(|| {
            ApiError::param(format!(
                "The {what} `{key}` is not valid URL encoding (a `%` must be followed by two hex digits of UTF-8)."
            ))
        })?;
        no_nul(&format!("{what} `{key}`"), &value)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Path parameters, percent-decoded once, as with axum's `Path`; a value that is not UTF-8 or
/// holds a NUL byte is `CHECK_PARAM` naming the parameter, never the framework's plain-text 400.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state).await.map_err(path_error)?;
        for (name, value) in &raw {
            no_nul(&format!("path parameter `{name}`"), value)?;
        }
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await.map_err(path_error)?;
        Ok(Path(value))
    }
}

fn path_error(rejection: axum::extract::rejection::PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    use axum::extract::rejection::PathRejection;
    let PathRejection::FailedToDeserializePathParams(e) = rejection else {
        return ApiError::internal(rejection.body_text());
    };
    match e.into_kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => {
            ApiError::param(format!("The path parameter `{key}` is not valid UTF-8 once percent-decoded."))
        }
        ErrorKind::ParseErrorAtKey { key, value, expected_type } => {
            ApiError::param(format!("The path parameter `{key}` must be {expected_type}, not `{value}`."))
        }
        ErrorKind::DeserializeError { key, value, message } => {
            ApiError::param(format!("The path parameter `{key}` is not valid (`{value}`): {message}"))
        }
        kind @ (ErrorKind::WrongNumberOfParameters { .. } | ErrorKind::UnsupportedType { .. }) => {
            ApiError::internal(kind)
        }
        kind => ApiError::param(format!("The path is not valid: {kind}.")),
    }
}

/// The query string as name → value (the last occurrence wins). Names the route does not read are
/// ignored, but the whole string must be valid URL encoding without NUL bytes.
#[derive(Debug, Default, Clone)]
pub struct Query(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        Ok(Query(url_pairs(raw.as_bytes(), "query parameter")?.into_iter().collect()))
    }
}
impl Query {
    /// A present, non-empty value.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Comma-separated values, blanks dropped.
    pub fn csv(&self, name: &str) -> Option<Vec<String>> {
        self.str(name).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
    }

    /// A non-negative integer, or `CHECK_PARAM` naming the parameter.
    pub fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                ApiError::param(format!("The query parameter `{name}` must be a non-negative integer, not `{v}`."))
            }),
        }
    }

    /// `page_no` and `page_size` (spec §4).
    pub fn page(&self, default_size: u64) -> Result<Page, ApiError> {
        let read = |name: &str, default: u64| -> Result<u64, ApiError> {
            match self.0.get(name).map(|s| s.trim()) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(ApiError::param(format!(
                        "The query parameter `{name}` must be an integer of at least 1, not `{v}`."
                    ))),
                },
            }
        };
        let page_no = read("page_no", 1)?;
        let page_size = read("page_size", default_size)?;
        if page_size > Page::MAX_SIZE {
            return Err(ApiError::param(format!(
                "The query parameter `page_size` must be at most {}, not {page_size}.",
                Page::MAX_SIZE
            )));
        }
        Ok(Page { page_no, page_size })
    }

    /// A value that must be one of `allowed` (exact match), else `CHECK_PARAM_ENUM`.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
            Some(v) => Err(enum_error(name, v, allowed)),
        }
    }
}

pub fn enum_error(name: &str, value: &str, allowed: &[&str]) -> ApiError {
    ApiError::new(
        ErrorCode::CheckParamEnum,
        format!("The parameter `{name}` must be one of {}, not `{value}`.", allowed.join(", ")),
    )
}

/// How a request body is encoded, from its `Content-Type` (JSON when absent or unknown).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    #[default]
    Json,
    Form,
    Multipart,
}

impl Encoding {
    pub fn of(headers: &HeaderMap) -> Encoding {
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "multipart/form-data" => Encoding::Multipart,
            "application/x-www-form-urlencoded" => Encoding::Form,
            _ => Encoding::Json,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Encoding {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Encoding::of(&parts.headers))
    }
}

/// A request body as a JSON object, whatever encoding it came in. Form keys such as
/// `block_storage.0.size` become nested arrays, so every encoding reads the same way.
#[derive(Debug, Default, Clone)]
pub struct Body(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let encoding = Encoding::of(req.headers());
        let content_type = req.headers().get(CONTENT_TYPE).cloned();
        // Read whole (it is at most 1 MiB) so that every encoding has the same limit and the same
        // 413, and an empty body is no fields before any parser sees it.
        let bytes = read_limited(req.into_body()).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body::default());
        }
        let map = match encoding {
            Encoding::Multipart => from_pairs(multipart_pairs(content_type, bytes).await?),
            Encoding::Form => from_pairs(url_pairs(&bytes, "form field")?),
            Encoding::Json => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => {
                    for (name, value) in &map {
                        json_no_nul(name, value)?;
                    }
                    map
                }
                Ok(_) => return Err(ApiError::param("The JSON body must be an object.")),
                Err(e) => {
                    return Err(ApiError::param(format!(
                        "The JSON body is malformed at line {}, column {}.",
                        e.line(),
                        e.column()
                    )));
                }
            },
        };
        Ok(Body(map))
    }
}

/// How much of an oversize body is still read (and dropped) before the 413, and for how long.
/// Closing a connection whose request is unread makes the kernel reset it, which can destroy the
/// 413 before the client reads it; reading the rest first lets the client see the answer, as
/// nginx's lingering close does. Past these bounds the connection is closed anyway.
const DRAIN_MAX: usize = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// The body, at most [`BODY_LIMIT`] bytes, else 413 (after draining what a client still sends).
async fn read_limited(mut body: axum::body::Body) -> Result<Bytes, ApiError> {
    use axum::body::HttpBody;
    let unreadable = || ApiError::param("The request body could not be read.");
    let mut buf = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame.map_err(|_| unreadable())?.into_data() else { continue };
        if buf.len() + data.len() > BODY_LIMIT {
            let mut drained = buf.len() + data.len();
            let drain = async {
                while let Some(Ok(frame)) =
                    std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
                {
                    drained += frame.data_ref().map_or(0, |d| d.len());
                    if drained > DRAIN_MAX {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
            return Err(too_large());
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

/// The fields of a buffered `multipart/form-data` body, as text.
async fn multipart_pairs(
    content_type: Option<axum::http::HeaderValue>,
    bytes: Bytes,
) -> Result<Vec<(String, String)>, ApiError> {
    let malformed = || ApiError::param("The multipart/form-data body is malformed.");
    let mut req = Request::new(axum::body::Body::from(bytes));
    if let Some(ct) = content_type {
        req.headers_mut().insert(CONTENT_TYPE, ct);
    }
    let mut multipart = axum::extract::Multipart::from_request(req, &()).await.map_err(|_| malformed())?;
    let mut pairs = Vec::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                let value = field.text().await.map_err(|_| malformed())?;
                no_nul(&format!("body field `{name}`"), &value)?;
                pairs.push((name, value));
            }
            Ok(None) => break,
            Err(_) => return Err(malformed()),
        }
    }
    Ok(pairs)
}

/// Refuses a NUL byte anywhere in a JSON field, naming the field as `rules.1.content`.
fn json_no_nul(name: &str, value: &Value) -> Result<(), ApiError> {
    match value {
        Value::String(s) => no_nul(&format!("body field `{name}`"), s),
        Value::Array(items) => items.iter().enumerate().try_for_each(|(i, v)| json_no_nul(&format!("{name}.{i}"), v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.contains('\0') {
                return Err(ApiError::param(format!("A key in the body field `{name}` contains a NUL byte.")));
            }
            json_no_nul(&format!("{name}.{k}"), v)
        }),
        _ => Ok(()),
    }
}

/// Builds an object from form pairs; `a.N.b` keys become `{"a": [{"b": …}]}` ordered by N.
fn from_pairs(pairs: Vec<(String, String)>) -> Map<String, Value> {
    let mut map = Map::new();
    let mut indexed: std::collections::BTreeMap<String, std::collections::BTreeMap<u32, Map<String, Value>>> =
        Default::default();
    for (k, v) in pairs {
        let parts: Vec<&str> = k.splitn(3, '.').collect();
        if let [base, idx, field] = parts[..]
            && let Ok(i) = idx.parse::<u32>()
        {
            indexed
                .entry(base.to_owned())
                .or_default()
                .entry(i)
                .or_default()
                .insert(field.to_owned(), Value::String(v));
            continue;
        }
        map.insert(k, Value::String(v));
    }
    for (base, items) in indexed {
        map.insert(base, Value::Array(items.into_values().map(Value::Object).collect()));
    }
    map
}

impl Body {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A string field; numbers are accepted and rendered as text.
    pub fn str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(ApiError::param(format!("The body field `{name}` must be a string."))),
        }
    }

    /// A text field that `multipart/form-data` clients send URL-encoded (instance `name` and
    /// `description`, spec §1): decoded once there; JSON and form values are taken as they are.
    pub fn encoded_str(&self, name: &str, encoding: Encoding) -> Result<Option<String>, ApiError> {
        match self.str(name)? {
            Some(v) if encoding == Encoding::Multipart => {
                let decoded = url_decode(v.as_bytes()).ok_or_else(|| {
                    ApiError::param(format!(
                        "The body field `{name}` of a multipart/form-data body is URL-encoded, and `{v}` is not \
                         valid URL encoding (write `%` as `%25`)."
                    ))
                })?;
                no_nul(&format!("body field `{name}`"), &decoded)?;
                Ok(Some(decoded))
            }
            other => Ok(other),
        }
    }

    pub fn required_str(&self, name: &str) -> Result<String, ApiError> {
        self.str(name)?.ok_or_else(|| ApiError::missing_body(name))
    }

    /// An integer field given as a JSON number or a numeric string.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let bad = || ApiError::param(format!("The body field `{name}` must be an integer."));
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A list of strings given as a JSON array or a comma-separated string.
    pub fn str_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => {
                Ok(Some(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()))
            }
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.trim().to_owned()),
                    _ => Err(ApiError::param(format!("The body field `{name}` must be a list of strings."))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::param(format!("The body field `{name}` must be a list of strings."))),
        }
    }
}

/// Checks a name-like text: trimmed, no control characters, `min..=max` code points.
pub fn text_field(name: &str, value: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.chars().any(char::is_control) {
        return Err(ApiError::param(format!("The field `{name}` must not contain control characters.")));
    }
    let n = v.chars().count();
    if n < min || n > max {
        return Err(ApiError::new(
            ErrorCode::CheckLength,
            format!("The field `{name}` must be {min} to {max} characters long, not {n}."),
        ));
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_form_keys_become_arrays() {
        let m = from_pairs(vec![
            ("name".into(), "a".into()),
            ("block_storage.1.size".into(), "20".into()),
            ("block_storage.0.size".into(), "10".into()),
            ("block_storage.0.type".into(), "ssd".into()),
        ]);
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"name":"a","block_storage":[{"size":"10","type":"ssd"},{"size":"20"}]})
        );
    }

    #[test]
    fn url_decoding_is_strict_and_once() {
        assert_eq!(url_decode(b"a+b%20c%2Bd%25").as_deref(), Some("a b c+d%"));
        assert_eq!(url_decode("서버".as_bytes()).as_deref(), Some("서버"));
        assert_eq!(url_decode(b"%EC%84%9C").as_deref(), Some("서"));
        for bad in [&b"%ZZ"[..], b"%", b"%2", b"%+1", b"%FF"] {
            assert_eq!(url_decode(bad), None, "{bad:?}");
        }
        let e = url_pairs(b"name=%ZZ&%%%", "form field").unwrap_err();
        assert!(e.message.contains("`name`"), "{}", e.message);
        assert!(url_pairs(b"a=%00", "form field").unwrap_err().message.contains("NUL"));
        assert_eq!(
            url_pairs(b"&page=&a=1&&", "query parameter").unwrap(),
            [("page".into(), "".into()), ("a".into(), "1".into())]
        );
    }

    #[test]
    fn text_bounds_count_code_points() {
        assert_eq!(text_field("name", "  서버  ", 1, 2).unwrap(), "서버");
        assert!(text_field("name", "서버서", 1, 2).is_err());
        assert!(text_field("name", "a\u{7}", 1, 10).is_err());
        assert!(text_field("name", "   ", 1, 10).is_err());
    }
}
