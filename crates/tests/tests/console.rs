//! The browser console end to end: the real server with the simulated driver, a console link from
//! the API, and headless Chromium (through `tests/browser/console.mjs`) reading the xterm.js
//! terminal. Missing tools fail the test with what to install; nothing is skipped
//! (`openwinv_tests::browser`).

use openwinv_tests::browser::{BROWSER_TIMEOUT_SECS, console_mjs, require_browser_tools};
use openwinv_tests::{Body, Server};
use reqwest::Method;
use serde_json::json;

async fn console_link(s: &Server, id: &str) -> String {
    let r = s.get(&format!("/v1/instances/{id}/remote-console")).await;
    r.ok_rows()[0]["link"].as_str().expect("link").to_owned()
}

#[tokio::test]
async fn the_browser_shows_the_serial_console() {
    require_browser_tools();
    let s = Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await;
    let body =
        json!({"zone_id": "KR1-Z01", "image_id": "IMG-ubuntu-2404", "flavor_id": "ss1.c1m1", "name": "console-e2e"});
    let r = s.call(Method::POST, "/v1/instances", Some(Body::Json(body))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.result()[0]["instance_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "active").await;

    // The terminal shows the machine's hostname line, and what is typed reaches it (echoed).
    let link = console_link(&s, &id).await;
    let timeout = BROWSER_TIMEOUT_SECS.to_string();
    let (ok, out) = console_mjs(
        &link,
        &["cloud-init: hostname console-e2e", &timeout, "--type", "echo-check-42\\r", "--then", "login: echo-check-42"],
    )
    .await;
    assert!(ok, "the console page did not show the instance's serial console:\n{out}");

    // The page spent the link.
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 404, "a console link opens once");
    let (ok, out) = console_mjs(&link, &["console-e2e", "10"]).await;
    assert!(!ok && out.contains("answered 404"), "a spent link must fail in the browser too:\n{out}");
}
