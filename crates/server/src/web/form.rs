//! Form bodies of the console: `application/x-www-form-urlencoded` or `multipart/form-data`
//! (an SSH key file), decoded with the API's strict URL decoding and its 1 MiB limit. Repeated
//! names (checkboxes) are kept in order, which the API's body map would not.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::input::{BODY_LIMIT, url_decode};

#[derive(Debug, Default)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// The first value of `name`, if not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.trim().is_empty())
    }

    /// Every value of `name`, blanks dropped.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.clone()).collect()
    }
}

fn bad(message: &str) -> Response {
    crate::error::ApiError::param(message.to_owned()).into_response()
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Form, Response> {
        let content_type =
            req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut mp = Multipart::from_request(req, state).await.map_err(|_| bad("The form is malformed."))?;
            let mut pairs = Vec::new();
            let mut size = 0;
            while let Some(field) = mp.next_field().await.map_err(|_| bad("The form is malformed."))? {
                let name = field.name().unwrap_or("").to_owned();
                let value = field.text().await.map_err(|_| bad("A form field is not UTF-8 text."))?;
                size += name.len() + value.len();
                if size > BODY_LIMIT {
                    return Err(crate::input::too_large().into_response());
                }
                if value.contains('\0') {
                    return Err(bad(&format!("The form field `{name}` must not contain a NUL byte.")));
                }
                pairs.push((name, value));
            }
            return Ok(Form(pairs));
        }
        let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| crate::input::too_large().into_response())?;
        let mut pairs = Vec::new();
        for pair in bytes.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            let (Some(k), Some(v)) = (url_decode(k), url_decode(v)) else {
                return Err(bad("The form is not valid URL encoding."));
            };
            if k.contains('\0') || v.contains('\0') {
                return Err(bad(&format!("The form field `{k}` must not contain a NUL byte.")));
            }
            pairs.push((k, v));
        }
        Ok(Form(pairs))
    }
}
