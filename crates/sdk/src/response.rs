//! Turning an HTTP answer into an envelope or a typed error (spec §3).
//!
//! The error envelope is recognised by its `error_code`, whatever the HTTP status, so a server that
//! reports a failure with 200 is still read as a failure.

use openwinv_wire::{Envelope, ErrorCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};

/// How much of an unreadable body an error keeps.
const SNIPPET_BYTES: usize = 200;

/// Decodes a body into `Envelope<T>`, or into the error it reports.
pub(crate) fn decode<T: DeserializeOwned>(status: u16, retry_after: Option<u64>, body: &[u8]) -> Result<Envelope<T>> {
    typed(status, &decode_value(status, retry_after, body)?)
}

/// Decodes a body into the success envelope as JSON, exactly as sent, or into the error it
/// reports.
pub(crate) fn decode_value(status: u16, retry_after: Option<u64>, body: &[u8]) -> Result<Value> {
    let value: Value = serde_json::from_slice(body).map_err(|e| Error::Decode {
        status,
        message: format!("the body is not JSON ({e})"),
        body: snippet(body),
    })?;
    if let Some(err) = api_error(status, retry_after, &value) {
        return Err(err);
    }
    if !(200..300).contains(&status) {
        return Err(Error::Decode {
            status,
            message: "a failure status without an iwinv error envelope".into(),
            body: snippet(body),
        });
    }
    Ok(value)
}

/// Reads a success envelope (from [`decode_value`]) into typed rows.
pub(crate) fn typed<T: DeserializeOwned>(status: u16, envelope: &Value) -> Result<Envelope<T>> {
    Envelope::<T>::deserialize(envelope).map_err(|e| Error::Decode {
        status,
        message: e.to_string(),
        body: snippet(envelope.to_string().as_bytes()),
    })
}

/// The error a failed answer reports; for bodies that are not JSON, a `Decode` error.
pub(crate) fn failure(status: u16, retry_after: Option<u64>, body: &[u8]) -> Error {
    match decode::<Value>(status, retry_after, body) {
        Err(e) => e,
        Ok(_) => {
            Error::Decode { status, message: "a failure status with a success envelope".into(), body: snippet(body) }
        }
    }
}

/// The single row of a detail, create or delete answer.
pub(crate) fn first_row<T>(env: Envelope<Vec<T>>) -> Result<T> {
    first_of(env.result)
}

/// The first of the rows of an answer, which must have one.
pub(crate) fn first_of<T>(rows: Vec<T>) -> Result<T> {
    rows.into_iter().next().ok_or_else(|| Error::Decode {
        status: 200,
        message: "expected one row, got an empty list".into(),
        body: String::new(),
    })
}

fn api_error(status: u16, retry_after: Option<u64>, v: &Value) -> Option<Error> {
    let error_code = v.get("error_code")?.as_str()?;
    let failed = error_code != "SUCCESS" || v.get("result").and_then(Value::as_str) == Some("error") || status >= 400;
    failed.then(|| Error::Api {
        status,
        code: ErrorCode::parse(error_code),
        error_code: error_code.to_owned(),
        message: v.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
        retry_after,
    })
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(SNIPPET_BYTES) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// Whether a body is the error envelope with this `error_code`.
pub(crate) fn is_error_code(body: &[u8], code: ErrorCode) -> bool {
    #[derive(Deserialize)]
    struct Code<'a> {
        #[serde(borrow)]
        error_code: Option<&'a str>,
    }
    serde_json::from_slice::<Code>(body).ok().and_then(|c| c.error_code).and_then(ErrorCode::parse) == Some(code)
}

/// The server's clock in Unix seconds: openwinv's `X-Openwinv-Server-Time`, else the `Date`
/// header every HTTP server may send.
pub(crate) fn server_time(headers: &reqwest::header::HeaderMap) -> Option<i64> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(secs) = text(openwinv_wire::headers::SERVER_TIME).and_then(|v| v.trim().parse().ok()) {
        return Some(secs);
    }
    let date = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(text("date")?).ok()?;
    Some(date.as_second())
}

/// Seconds of a `Retry-After` header given as an integer (the only form the API uses).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openwinv_wire::catalog::Zone;

    #[test]
    fn success_envelope_decodes_rows() {
        let body = br#"{"code":"0x00","error_code":"SUCCESS","message":"","result":[
            {"zone_id":"KR1-Z01","zone_name":"Seoul 1","status":"on"}],"count":1}"#;
        let env = decode::<Vec<Zone>>(200, None, body).unwrap();
        assert_eq!(env.count, Some(1));
        assert_eq!(env.result[0].zone_id, "KR1-Z01");
    }

    #[test]
    fn error_envelope_becomes_api_error() {
        let body =
            br#"{"code":"0x1","error_code":"NOT_FOUND","message":"The SSH key `x` was not found.","result":"error"}"#;
        match decode::<Vec<Zone>>(404, None, body).unwrap_err() {
            Error::Api { status, code, error_code, message, retry_after } => {
                assert_eq!(status, 404);
                assert_eq!(code, Some(ErrorCode::NotFound));
                assert_eq!(error_code, "NOT_FOUND");
                assert!(message.contains("SSH key"));
                assert_eq!(retry_after, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_error_code_is_kept() {
        let body = br#"{"code":"0x99","error_code":"SOMETHING_NEW","message":"m","result":"error"}"#;
        let err = decode::<Vec<Zone>>(400, Some(3), body).unwrap_err();
        assert!(matches!(
            &err,
            Error::Api { code: None, error_code, retry_after: Some(3), .. } if error_code == "SOMETHING_NEW"
        ));
        assert_eq!(err.to_string(), "SOMETHING_NEW: m");
    }

    #[test]
    fn error_envelope_with_status_200_is_still_an_error() {
        let body = br#"{"code":"0x7","error_code":"CHECK_SIGNATURE","message":"old","result":"error"}"#;
        assert_eq!(decode::<Vec<Zone>>(200, None, body).unwrap_err().code(), Some(ErrorCode::CheckSignature));
    }

    #[test]
    fn non_json_and_wrong_shapes_are_decode_errors() {
        let html = b"<html>502 Bad Gateway</html>";
        assert!(matches!(decode::<Vec<Zone>>(502, None, html), Err(Error::Decode { status: 502, .. })));
        let wrong = br#"{"code":"0x00","error_code":"SUCCESS","message":"","result":[{"x":1}]}"#;
        assert!(matches!(decode::<Vec<Zone>>(200, None, wrong), Err(Error::Decode { status: 200, .. })));
        assert!(matches!(failure(500, None, b"oops"), Error::Decode { status: 500, .. }));
    }

    #[test]
    fn the_server_time_comes_from_either_header() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(server_time(&h), None);
        h.insert("date", "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
        assert_eq!(server_time(&h), Some(784_111_777));
        h.insert(openwinv_wire::headers::SERVER_TIME, "1900000000".parse().unwrap());
        assert_eq!(server_time(&h), Some(1_900_000_000));
    }

    #[test]
    fn error_codes_are_read_from_the_body() {
        let body = br#"{"code":"0x7","error_code":"CHECK_SIGNATURE","message":"old","result":"error"}"#;
        assert!(is_error_code(body, ErrorCode::CheckSignature));
        assert!(!is_error_code(body, ErrorCode::NotFound));
        assert!(!is_error_code(b"<html>", ErrorCode::CheckSignature));
    }

    #[test]
    fn retry_after_reads_integer_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(7));
    }
}
