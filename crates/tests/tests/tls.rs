//! What a test suite needs to point real iwinv clients at openwinv (issue 13): HTTPS with a local
//! CA for clients that hard-code `https://api-kr.iwinv.kr`, the server time on every answer and
//! clients that recover from a moved clock, the CLI waiting out a 429, the unlimited first key of
//! the simulator, and `serve --ephemeral` leaving nothing behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openwinv_sdk::Client;
use openwinv_tests::{ACCESS_KEY, SECRET_KEY, Server, TestDatabase, binary, mode, unix_now};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// curl's exit status when the peer's certificate cannot be verified.
const CURL_PEER_VERIFY_FAILED: i32 = 60;

/// The port of an endpoint such as `https://127.0.0.1:8443`.
fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {endpoint}"))
}

/// The HTTPS endpoint that `--tls-listen` printed.
fn https_endpoint(s: &Server) -> String {
    let lines = s.stdout_lines();
    let line = lines.iter().find_map(|l| l.split("serving HTTPS on ").nth(1));
    line.unwrap_or_else(|| panic!("no HTTPS line in {lines:?}")).trim().to_owned()
}

/// `curl -sS` with these arguments, signed with the bootstrap key for `path`; (exit status,
/// headers and body).
async fn curl(s: &Server, path: &str, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--include", "--max-time", "20"]).args(args);
    for (name, value) in Server::signature(ACCESS_KEY, SECRET_KEY, s.now(), path) {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    let out = cmd.output().await.expect("curl must be installed to test HTTPS as a client sees it");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The JSON body after curl's `--include` headers.
fn body_of(text: &str) -> Value {
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_else(|| panic!("no body in {text}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn ca_file(s: &Server) -> PathBuf {
    s.data_path("tls/ca.pem")
}

#[tokio::test]
async fn curl_trusting_the_local_ca_reaches_api_kr_iwinv_kr() {
    let s = Server::start_with(&["--tls"], &[]).await;
    assert!(s.endpoint.starts_with("https://127.0.0.1:"), "{}", s.endpoint);
    let port = port_of(&s.endpoint);
    // `openwinv tls ca` prints the CA that the first start made; its key is the owner's only.
    let data = s.data_dir.to_str().unwrap();
    let printed = s.cli_run(&["tls", "ca", "--data-dir", data]).await.ok().stdout;
    assert_eq!(printed, std::fs::read_to_string(ca_file(&s)).unwrap());
    assert!(printed.starts_with("-----BEGIN CERTIFICATE-----"), "{printed}");
    assert_eq!(mode(&s.data_path("tls/ca-key.pem")), 0o600);

    let resolve = format!("api-kr.iwinv.kr:{port}:127.0.0.1");
    let url = format!("https://api-kr.iwinv.kr:{port}/v1/zones");
    let ca = ca_file(&s);
    let (code, text) = curl(&s, "/v1/zones", &["--cacert", ca.to_str().unwrap(), "--resolve", &resolve, &url]).await;
    assert_eq!(code, 0, "{text}");
    // curl offers HTTP/2 in ALPN, and gets it; one that asks for HTTP/1.1 gets that.
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    let body = body_of(&text);
    assert_eq!(body["error_code"], "SUCCESS", "{text}");
    assert_eq!(body["result"][0]["zone_id"], "KR1-Z01", "{text}");
    let ca_arg = ["--cacert", ca.to_str().unwrap(), "--resolve", &resolve];
    let (code, text) = curl(&s, "/v1/zones", &[&ca_arg[..], &["--http1.1", &url]].concat()).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(body_of(&text)["result"][0]["zone_id"], "KR1-Z01", "{text}");
    // A write over HTTP/2: its body arrives whole, and the envelope comes back.
    let keys = format!("https://api-kr.iwinv.kr:{port}/v1/auth/ssh_key");
    let (code, text) = curl(&s, "/v1/auth/ssh_key", &[&ca_arg[..], &["-d", "name=&content=", &keys]].concat()).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("HTTP/2 400"), "{text}");
    assert_eq!(body_of(&text)["error_code"], "CHECK_LENGTH", "{text}");

    // Without the CA, curl refuses the certificate: no HTTP answer at all.
    let (code, text) = curl(&s, "/v1/zones", &["--resolve", &resolve, &url]).await;
    assert_eq!(code, CURL_PEER_VERIFY_FAILED, "{text}");
    assert!(!text.contains("HTTP/"), "{text}");
    // The certificate covers the loopback names too.
    let localhost = format!("https://localhost:{port}/v1/zones");
    let (code, text) = curl(&s, "/v1/zones", &["--cacert", ca.to_str().unwrap(), &localhost]).await;
    assert_eq!((code, body_of(&text)["error_code"].as_str()), (0, Some("SUCCESS")), "{text}");

    // The first start wrote credentials for HTTPS, and the CLI uses them as they are.
    let creds = std::fs::read_to_string(s.data_path("credentials")).unwrap();
    assert!(creds.contains(&format!("endpoint = \"https://127.0.0.1:{port}\"")), "{creds}");
    assert!(creds.contains("ca_file = \""), "{creds}");
    let mut cmd = Command::new(binary());
    cmd.args(["--profile", s.data_path("credentials").to_str().unwrap(), "zones", "--json"]);
    for var in ["IWINV_ENDPOINT", "IWINV_ACCESS_KEY", "IWINV_SECRET_KEY", "IWINV_CONFIG", "IWINV_CA_FILE"] {
        cmd.env_remove(var);
    }
    let out = cmd.output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // And with the environment instead, `--ca-file` is what makes the difference.
    let with_ca = s.cli_run(&["--ca-file", ca.to_str().unwrap(), "zones", "--json"]).await.ok();
    assert_eq!(with_ca.rows()[0]["zone_id"], "KR1-Z01");
    s.cli_run(&["zones"]).await.failed().stderr_has("--ca-file");
}

#[tokio::test]
async fn tls_names_are_added_to_the_certificate() {
    let s = Server::start_with(&["--tls", "--tls-name", "cloud.test"], &[]).await;
    let port = port_of(&s.endpoint);
    let ca = ca_file(&s);
    let resolve = |host: &str| format!("{host}:{port}:127.0.0.1");
    let url = |host: &str| format!("https://{host}:{port}/v1/zones");
    let (code, text) = curl(
        &s,
        "/v1/zones",
        &["--cacert", ca.to_str().unwrap(), "--resolve", &resolve("cloud.test"), &url("cloud.test")],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    // A name the certificate does not cover is refused by TLS, even with the CA.
    let (code, text) = curl(
        &s,
        "/v1/zones",
        &["--cacert", ca.to_str().unwrap(), "--resolve", &resolve("other.test"), &url("other.test")],
    )
    .await;
    assert_eq!(code, CURL_PEER_VERIFY_FAILED, "{text}");
}

#[tokio::test]
async fn the_sdk_trusts_the_ca_file_and_https_runs_beside_http() {
    let s = Server::start_with(&["--tls-listen", "127.0.0.1:0"], &[]).await;
    assert!(s.endpoint.starts_with("http://"), "{}", s.endpoint);
    let https = https_endpoint(&s).replace("127.0.0.1", "localhost");
    // Plain HTTP still answers on the listen address.
    s.get("/v1/zones").await.ok_rows();

    let trusting = Client::new(&https, ACCESS_KEY, SECRET_KEY).unwrap().with_ca_file(ca_file(&s)).unwrap();
    let zones = trusting.zones().await.expect("zones over HTTPS");
    assert_eq!(zones[0].zone_id, "KR1-Z01");

    // The real endpoint's name, as clients hard-code it, reaches the local server (curl's
    // --resolve): the certificate is checked against api-kr.iwinv.kr.
    let port = port_of(&https_endpoint(&s));
    let local: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let real_name = Client::new(&format!("https://api-kr.iwinv.kr:{port}"), ACCESS_KEY, SECRET_KEY)
        .unwrap()
        .with_ca_file(ca_file(&s))
        .unwrap()
        .with_resolve("api-kr.iwinv.kr", local)
        .unwrap();
    assert_eq!(real_name.endpoint(), format!("https://api-kr.iwinv.kr:{port}"));
    let zones = real_name.zones().await.expect("zones from https://api-kr.iwinv.kr over the local CA");
    assert_eq!(zones[0].zone_id, "KR1-Z01");
    // A name the certificate does not hold is refused by TLS, on the same address.
    let other = Client::new(&format!("https://not-in-the-cert.test:{port}"), ACCESS_KEY, SECRET_KEY)
        .unwrap()
        .with_ca_file(ca_file(&s))
        .unwrap()
        .with_resolve("not-in-the-cert.test", local)
        .unwrap();
    match other.zones().await {
        Err(openwinv_sdk::Error::Http(e)) => assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}"),
        other => panic!("expected a certificate name refusal, got {other:?}"),
    }

    // A client without the CA is refused by TLS: no answer from the server, an HTTP error.
    let plain = Client::new(&https, ACCESS_KEY, SECRET_KEY).unwrap();
    match plain.zones().await {
        Err(openwinv_sdk::Error::Http(e)) => {
            assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
        }
        other => panic!("expected a TLS refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn every_answer_tells_the_server_time() {
    let s = Server::start().await;
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "2h"}))).await.ok_rows();
    let expected = s.server_time().await;
    // A signed call (refused: the harness signs with this machine's clock), a public page, a 404.
    for r in [s.get("/v1/zones").await, s.raw(Method::GET, "/healthz", &[], None).await, s.get("/v1/nowhere").await] {
        let secs: i64 = r.header("x-openwinv-server-time").expect("X-Openwinv-Server-Time").parse().unwrap();
        assert!((secs - expected).abs() <= 5, "{secs} vs {expected}");
        let date = r.header("date").expect("Date");
        let parsed: jiff::Timestamp =
            jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(date).unwrap_or_else(|e| panic!("{date}: {e}"));
        assert!((parsed.as_second() - secs).abs() <= 1, "{date} vs {secs}");
    }
    assert!(expected - unix_now() > 7000, "the clock moved");
}

#[tokio::test]
async fn the_cli_and_the_sdk_recover_from_a_moved_clock() {
    let s = Server::start().await;
    s.admin(Method::POST, "/admin/v1/clock/advance", Some(json!({"duration": "1h"}))).await.ok_rows();

    let run = s.cli_run(&["zones", "--json"]).await.ok();
    assert_eq!(run.rows()[0]["zone_id"], "KR1-Z01");
    run.stderr_has("its clock is").stderr_has("ahead of this machine's");
    // `--time-offset` is strict: no correction.
    s.cli_run(&["--time-offset", "0", "zones"]).await.failed().stderr_has("CHECK_SIGNATURE");

    let notes = Arc::new(Mutex::new(Vec::<String>::new()));
    let kept = notes.clone();
    let client = Client::new(&s.endpoint, ACCESS_KEY, SECRET_KEY)
        .unwrap()
        .with_notices(move |note| kept.lock().unwrap().push(note.to_owned()));
    assert_eq!(client.zones().await.expect("zones after the skew")[0].zone_id, "KR1-Z01");
    assert_eq!(notes.lock().unwrap().len(), 1, "{notes:?}");
    // The skew is kept: the next request is signed right the first time.
    client.zones().await.unwrap();
    assert_eq!(notes.lock().unwrap().len(), 1, "{notes:?}");
    let strict = Client::new(&s.endpoint, ACCESS_KEY, SECRET_KEY).unwrap().with_time_offset(0);
    let err = strict.zones().await.unwrap_err();
    assert_eq!(err.code(), Some(openwinv_sdk::wire::ErrorCode::CheckSignature), "{err}");
}

#[tokio::test]
async fn the_cli_waits_out_a_rate_limit() {
    let s = Server::start().await;
    // 10 a minute: one token every 6 s, so a spent bucket stays spent while the CLI starts.
    let (key, secret) = s.new_account("busy", json!({"rate_limit": 10})).await;
    let mut refused = false;
    for _ in 0..20 {
        if s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await.status == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the bucket never ran out");
    let run = s.cli_run_as(&key, &secret, &["zones", "--json"]).await.ok();
    assert_eq!(run.rows()[0]["zone_id"], "KR1-Z01");
    run.stderr_has("rate limited (429); retrying in").stderr_has("(1 of 3)");
}

#[tokio::test]
async fn the_first_key_of_the_simulator_is_unlimited() {
    let s = Server::start().await;
    for _ in 0..70 {
        let r = s.get("/v1/zones").await;
        r.ok_rows();
        assert_eq!(r.header("ratelimit-limit"), None);
    }
    assert!(s.stdout_lines().iter().any(|l| l.contains("--rate-limit 60")), "{:?}", s.stdout_lines());
    // Keys made by the operator keep iwinv's 60 a minute.
    let (key, secret) = s.new_account("team", json!({})).await;
    let r = s.call_as(&key, &secret, Method::GET, "/v1/zones", None).await;
    assert_eq!(r.header("ratelimit-limit"), Some("60"));
    // An explicit default applies to the first key too.
    let limited = Server::start_with(&["--default-rate-limit", "60"], &[]).await;
    assert_eq!(limited.get("/v1/zones").await.header("ratelimit-limit"), Some("60"));
}

/// A `serve --ephemeral` process with its own `TMPDIR`; the ephemeral directory it printed.
async fn ephemeral_server(tmp: &Path, database: Option<&str>) -> (tokio::process::Child, PathBuf, String) {
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--ephemeral", "--listen", "127.0.0.1:0", "--sim-delay", "0"])
        .args(database.map(|url| ["--database", url]).into_iter().flatten())
        .env("TMPDIR", tmp)
        .env("RUST_LOG", "warn")
        .env_remove("OPENWINV_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start openwinv");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut dir, mut endpoint) = (None, None);
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("Ephemeral data directory ") {
                dir = rest.split(" (").next().map(PathBuf::from);
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                endpoint = Some(rest.trim().to_owned());
                break;
            }
        }
    })
    .await;
    assert!(started.is_ok(), "openwinv --ephemeral did not start");
    // Keep reading so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, dir.expect("the ephemeral directory is printed"), endpoint.expect("listening"))
}

#[tokio::test]
async fn ephemeral_leaves_no_directory_behind() {
    let tmp = tempfile::tempdir().unwrap();
    // The default SQLite file lives in the ephemeral directory; a PostgreSQL database is the
    // caller's and stays.
    let db = TestDatabase::new().await;
    let database = (openwinv_tests::store_name() == "postgres").then_some(db.url.as_str());
    let (mut child, dir, endpoint) = ephemeral_server(tmp.path(), database).await;
    assert!(dir.starts_with(tmp.path()), "{} not in TMPDIR", dir.display());
    assert!(dir.join("admin-token").is_file() && dir.join("credentials").is_file());
    let zones = Client::new(&endpoint, ACCESS_KEY, SECRET_KEY).unwrap().zones().await;
    assert!(matches!(zones, Err(openwinv_sdk::Error::Api { .. })), "a random key, not ours: {zones:?}");
    let creds = std::fs::read_to_string(dir.join("credentials")).unwrap();
    let value = |key: &str| {
        creds.lines().find_map(|l| l.strip_prefix(&format!("{key} = \""))).unwrap().trim_end_matches('"').to_owned()
    };
    let client = Client::new(&endpoint, value("access_key"), value("secret_key")).unwrap();
    assert_eq!(client.zones().await.unwrap()[0].zone_id, "KR1-Z01");

    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("stops").unwrap();
    assert!(status.success(), "{status}");
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "TMPDIR is not empty");
}
