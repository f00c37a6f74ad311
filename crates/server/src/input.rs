//! Request input: query strings and bodies in JSON, `multipart/form-data` or
//! `application/x-www-form-urlencoded`, with numbers as JSON numbers or numeric strings.
//!
//! Handlers read fields by name so that every error names the field at fault.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use openwinv_wire::ErrorCode;
use openwinv_wire::envelope::Page;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest request body accepted (spec §1).
pub const BODY_LIMIT: usize = 1024 * 1024;

fn too_large() -> ApiError {
    ApiError::param(format!("The request body is larger than {BODY_LIMIT} bytes."))
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// The query string as name → value (the last occurrence wins).
#[derive(Debug, Default, Clone)]
pub struct Query(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|_| ApiError::param("The query string is not valid URL encoding."))?;
        Ok(Query(pairs.into_iter().collect()))
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

/// A request body as a JSON object, whatever encoding it came in. Form keys such as
/// `block_storage.0.size` become nested arrays, so every encoding reads the same way.
#[derive(Debug, Default, Clone)]
pub struct Body(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type =
            req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = axum::extract::Multipart::from_request(req, state)
                .await
                .map_err(|_| ApiError::param("The multipart/form-data body is malformed."))?;
            let mut pairs = Vec::new();
            loop {
                match multipart.next_field().await {
                    Ok(Some(field)) => {
                        let name = field.name().unwrap_or("").to_owned();
                        let value = field.text().await.map_err(|e| multipart_error(&e.to_string()))?;
                        pairs.push((name, value));
                    }
                    Ok(None) => break,
                    Err(e) => return Err(multipart_error(&e.body_text())),
                }
            }
            return Ok(Body(from_pairs(pairs)));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|_| too_large())?;
        if bytes.len() > BODY_LIMIT {
            return Err(too_large());
        }
        if content_type.starts_with("application/x-www-form-urlencoded") {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
                .map_err(|_| ApiError::param("The form body is not valid URL encoding."))?;
            return Ok(Body(from_pairs(pairs)));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body::default());
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(ApiError::param("The JSON body must be an object.")),
            Err(e) => {
                Err(ApiError::param(format!("The JSON body is malformed at line {}, column {}.", e.line(), e.column())))
            }
        }
    }
}

fn multipart_error(detail: &str) -> ApiError {
    if detail.contains("length limit") || detail.contains("too large") {
        too_large()
    } else {
        ApiError::param("The multipart/form-data body is malformed.")
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
    fn text_bounds_count_code_points() {
        assert_eq!(text_field("name", "  서버  ", 1, 2).unwrap(), "서버");
        assert!(text_field("name", "서버서", 1, 2).is_err());
        assert!(text_field("name", "a\u{7}", 1, 10).is_err());
        assert!(text_field("name", "   ", 1, 10).is_err());
    }
}
