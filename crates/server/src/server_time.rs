//! `Date` and [ext] `X-Openwinv-Server-Time` on every answer, both from the server clock (which
//! `admin clock set/advance` moves), so that a client whose timestamp was refused with
//! `CHECK_SIGNATURE` can learn the skew and sign again. The Unix-seconds header saves clients
//! from parsing an HTTP date; `Date` is what a client of the real service can read too.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::DATE;
use axum::middleware::Next;
use axum::response::Response;
use openwinv_wire::headers;

use crate::AppState;

/// Middleware on every route.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let now = state.clock.unix();
    let h = resp.headers_mut();
    if let Some(date) = http_date(now) {
        h.insert(DATE, date);
    }
    h.insert(headers::SERVER_TIME, HeaderValue::from(now));
    resp
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 IMF-fixdate).
fn http_date(unix: i64) -> Option<HeaderValue> {
    let ts = jiff::Timestamp::from_second(unix).ok()?;
    let text = jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&ts).ok()?;
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(http_date(784_111_777).unwrap(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
