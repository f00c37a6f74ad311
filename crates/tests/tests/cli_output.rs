//! The CLI as a new user meets it (issue 13, part 4), against a live server: tables that fit 80
//! and 120 columns without breaking ids, the `--output` formats, lists that page through
//! everything in the machine formats, names where ids go, "did you mean", errors as JSON,
//! `operations list`, the admin endpoint from the data directory, where a bad endpoint came
//! from, named contexts, completions and the man page.

use openwinv_tests::{ACCESS_KEY, CliRun as Run, SECRET_KEY, Server, mode};
use reqwest::Method;
use serde_json::{Value, json};
use unicode_width::UnicodeWidthStr;

use openwinv_tests::ED25519;
const CREATE: [&str; 8] =
    ["instances", "create", "--zone", "KR1-Z01", "--image", "IMG-ubuntu-2404", "--flavor", "ss1.c1m1"];
/// A name longer than an 80-column table has room for.
const LONG_NAME: &str = "a-web-server-with-a-name-long-enough-to-be-cut-in-a-table";

async fn fast_server() -> Server {
    Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await
}

/// The CLI with the bootstrap key and the operator token, and these variables beside them.
async fn cli_env(s: &Server, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let mut envs = vec![
        ("IWINV_ENDPOINT", s.endpoint.as_str()),
        ("IWINV_ACCESS_KEY", ACCESS_KEY),
        ("IWINV_SECRET_KEY", SECRET_KEY),
        ("OPENWINV_ADMIN_ENDPOINT", s.endpoint.as_str()),
        ("OPENWINV_ADMIN_TOKEN", s.admin_token.as_str()),
    ];
    envs.extend_from_slice(extra);
    s.cli_run_bare(args, &envs).await
}

async fn cli(s: &Server, args: &[&str]) -> Run {
    cli_env(s, args, &[]).await
}

fn str_of<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or_else(|| panic!("no string `{key}` in {row}"))
}

#[track_caller]
fn fits(run: &Run, width: usize) {
    for line in run.stdout.lines() {
        assert!(line.width() <= width, "a line wider than {width}: {line:?}\n{}", run.stdout);
    }
}

#[tokio::test]
async fn tables_fit_the_terminal_and_never_break_ids() {
    let s = fast_server().await;
    cli(&s, &["ssh-keys", "create", "--name", "laptop", "--public-key", ED25519]).await.ok();
    // `--ssh-key laptop`: the key's name where its id goes (an unknown key would be refused).
    let created = cli(&s, &[&CREATE[..], &["--name", LONG_NAME, "--ssh-key", "laptop", "--wait", "--json"]].concat())
        .await
        .ok()
        .row();
    let id = str_of(&created, "instance_id").to_owned();
    cli(&s, &[&CREATE[..], &["--name", "db", "--wait"]].concat()).await.ok();

    for width in [80, 120] {
        let table = cli_env(&s, &["instances"], &[("COLUMNS", &width.to_string())]).await.ok();
        fits(&table, width);
        table.stdout_has(&id).stdout_has("STATUS");
        assert!(table.stdout.lines().any(|l| l.starts_with(&id)), "the id is whole on its line:\n{}", table.stdout);
    }
    let narrow = cli_env(&s, &["instances"], &[("COLUMNS", "80")]).await.ok();
    narrow.stdout_has("…").stderr_has("left out to fit 80 columns: ").stderr_has("created");
    assert!(!narrow.stdout.contains(LONG_NAME), "the long name is cut at 80 columns:\n{}", narrow.stdout);
    // A terminal that reports no width: nothing is cut, no one-character columns.
    let unlimited = cli_env(&s, &["instances"], &[("COLUMNS", "0")]).await.ok();
    unlimited.stdout_has(LONG_NAME).stdout_has(&id);
    assert_eq!(unlimited.stdout.lines().count(), 3, "a header and two rows:\n{}", unlimited.stdout);

    let csv = cli_env(&s, &["instances", "-o", "csv", "--columns", "id,name,status"], &[("COLUMNS", "40")]).await.ok();
    assert_eq!(csv.stdout.lines().next(), Some("ID,NAME,STATUS"), "{}", csv.stdout);
    csv.stdout_has(&format!("{id},{LONG_NAME},active"));
    let ids = cli(&s, &["instances", "--output", "ids"]).await.ok();
    assert_eq!(ids.stdout.lines().count(), 2, "{}", ids.stdout);
    assert!(ids.stdout.lines().any(|l| l == id), "{}", ids.stdout);
    let plain = cli(&s, &["instances", "--name", "db", "-o", "plain", "--columns", "name,status", "--no-header"]).await;
    assert_eq!(plain.ok().stdout, "db\tactive\n");
    let yaml = cli(&s, &["instances", "show", &id, "-o", "yaml"]).await.ok();
    yaml.stdout_has(&format!("- instance_id: \"{id}\"")).stdout_has(&format!("name: \"{LONG_NAME}\""));
    let bad = cli(&s, &["instances", "--columns", "id,nope"]).await.failed();
    bad.stderr_has("`nope`").stderr_has("public_ip");

    // Names where ids go, and the nearest id for a typo.
    let shown = cli(&s, &["instances", "show", LONG_NAME, "--json"]).await.ok().row();
    assert_eq!(shown["instance_id"], id.as_str());
    cli(&s, &["instances", "shutdown", "db", "--wait"]).await.ok().stdout_has("off");
    // One character off at the end, whatever the id's last character is.
    let last = if id.ends_with('x') { 'y' } else { 'x' };
    let typo = format!("{}{last}", &id[..id.len() - 1]);
    let missing = cli(&s, &["instances", "show", &typo]).await.failed();
    missing.stderr_has("NOT_FOUND").stderr_has(&format!("did you mean `{id}`?"));
    cli(&s, &["scripts", "create", "--name", "boot", "--content", "echo 1"]).await.ok();
    cli(&s, &["scripts", "create", "--name", "boot", "--content", "echo 2"]).await.ok();
    cli(&s, &["scripts", "delete", "boot"]).await.failed().stderr_has("2 user scripts are named `boot`");
    cli(&s, &["ssh-keys", "delete", "laptop"]).await.ok().stdout_has("laptop");

    // Errors as JSON with --json.
    let failed = cli(&s, &["instances", "show", &typo, "--json"]).await.failed();
    let error: Value = serde_json::from_str(&failed.stderr).unwrap_or_else(|e| panic!("{e}: {}", failed.stderr));
    assert_eq!(error["error_code"], "NOT_FOUND", "{error}");
    assert!(error["hint"].is_string() && error["suggestions"][0].as_str().unwrap().contains(&id), "{error}");
    assert!(failed.stdout.is_empty(), "{}", failed.stdout);

    // Every operation of the account, newest first, as the server lists them.
    let ops = cli(&s, &["operations", "list", "--json"]).await.ok().rows();
    assert_eq!(ops.len(), 3, "two creates and a shutdown: {ops:?}");
    assert_eq!(ops[0]["kind"], "instance.shutdown");
    assert_eq!(&ops, s.get("/v1/operations?page_size=100").await.ok_rows());
    let mine = cli(&s, &["operations", "list", "--resource", &id, "--status", "succeeded", "-o", "ids"]).await;
    assert_eq!(mine.ok().stdout.lines().count(), 1);
    s.get("/v1/operations?status=done").await.assert_error(400, "CHECK_PARAM_ENUM");
}

#[tokio::test]
async fn machine_formats_page_through_every_row() {
    let s = fast_server().await;
    for i in 0..23 {
        let body = json!({"name": format!("script-{i:02}"), "content": "#!/bin/sh\necho hi\n"});
        s.call(Method::POST, "/v1/instance/script", Some(openwinv_tests::Body::Json(body))).await.ok_rows();
    }
    let all = cli(&s, &["scripts", "--json"]).await.ok().rows();
    assert_eq!(all.len(), 23, "--json lists every page");
    assert_eq!(cli(&s, &["scripts", "-o", "ids"]).await.ok().stdout.lines().count(), 23);
    assert_eq!(cli(&s, &["scripts", "-o", "csv", "--no-header"]).await.ok().stdout.lines().count(), 23);
    let yaml = cli(&s, &["scripts", "-o", "yaml"]).await.ok();
    assert_eq!(yaml.stdout.matches("- user_script_id:").count(), 23, "{}", yaml.stdout);

    // One page when asked for, in any format.
    let page = cli(&s, &["scripts", "--json", "--page", "3", "--page-size", "10"]).await.ok();
    assert_eq!(page.rows().len(), 3);
    page.stderr_has("page 3 of 3");
    // The table shows one page and says on stderr, not stdout, that there are more.
    let table = cli(&s, &["scripts"]).await.ok();
    table.stderr_has("page 1 of 3, 23 rows; --page 2 for more");
    assert!(!table.stdout.contains("page 1"), "{}", table.stdout);
    assert_eq!(table.stdout.lines().count(), 11, "a header and 10 rows:\n{}", table.stdout);
    assert_eq!(cli(&s, &["scripts", "--all"]).await.ok().stdout.lines().count(), 24);
}

#[tokio::test]
async fn admin_and_clients_take_their_endpoint_from_where_their_credentials_are() {
    let s = Server::start().await;
    let data_dir = s.data_dir.to_str().unwrap().to_owned();
    let local = [("OPENWINV_DATA_DIR", data_dir.as_str())];
    // Nothing but the data directory: the token from its admin-token file and the endpoint from
    // the credentials file beside it (not the default :8080).
    s.cli_run_bare(&["admin", "accounts", "list"], &local).await.ok().stdout_has("dev");
    s.cli_run_bare(&["zones"], &local).await.ok().stdout_has("KR1-Z01");

    let wrong_token = [local[0], ("OPENWINV_ADMIN_TOKEN", "not-the-token")];
    let wrong = s.cli_run_bare(&["admin", "accounts", "list"], &wrong_token).await.failed();
    wrong.stderr_has("CHECK_CREDENTIAL").stderr_has("wrong").stderr_has("OPENWINV_ADMIN_TOKEN (environment)");
    wrong.stderr_has(&s.endpoint);

    // A bad endpoint is blamed on where it came from.
    let bad = s.cli_run_bare(&["zones"], &[local[0], ("IWINV_ENDPOINT", "localhost:1/v1")]).await.failed();
    bad.stderr_has("IWINV_ENDPOINT (environment)");
    assert!(!bad.stderr.contains("credentials"), "not blamed on the credentials file:\n{}", bad.stderr);
    let profile = s.data_dir.parent().unwrap().join("bad.toml");
    std::fs::write(&profile, "endpoint = \"ftp://x\"\naccess_key = \"A\"\nsecret_key = \"S\"\n").unwrap();
    let bad = s.cli_run_bare(&["--profile", profile.to_str().unwrap(), "zones"], &[]).await.failed();
    bad.stderr_has("bad.toml").stderr_has("http://");
}

#[tokio::test]
async fn named_contexts_hold_endpoint_keys_and_token() {
    let s = Server::start().await;
    let no_context = s.cli_run_bare(&["zones"], &[]).await.failed();
    no_context.stderr_has("no credentials").stderr_has("context create");

    // A real CA file (the one `openwinv tls ca` makes): the context hands it to the client, which
    // trusts it besides the system's (this server speaks plain HTTP, so it is not needed here).
    let ca_dir = s.data_dir.parent().unwrap().join("ca-dir");
    let pem = s.cli_run_bare(&["tls", "ca", "--data-dir", ca_dir.to_str().unwrap()], &[]).await.ok().stdout;
    let ca_file = ca_dir.join("exported-ca.pem");
    std::fs::write(&ca_file, pem).unwrap();
    let ca_file = ca_file.to_str().unwrap();
    let create = [
        "context",
        "create",
        "local",
        "--endpoint",
        &s.endpoint,
        "--access-key",
        ACCESS_KEY,
        "--secret-key",
        SECRET_KEY,
        "--admin-token",
        &s.admin_token,
        "--ca-file",
        ca_file,
    ];
    s.cli_run_bare(&create, &[]).await.ok().stderr_has("`local` saved and active");
    let file = s.data_dir.parent().unwrap().join("cli-home/.config/openwinv/contexts.toml");
    assert_eq!(mode(&file) & 0o777, 0o600, "the contexts file holds secrets");
    s.cli_run_bare(&["zones"], &[]).await.ok().stdout_has("KR1-Z01");
    s.cli_run_bare(&["admin", "accounts", "list"], &[]).await.ok().stdout_has("dev");
    s.cli_run_bare(&create, &[]).await.failed().stderr_has("--force");

    let other = ["context", "create", "other", "--endpoint", "http://127.0.0.1:9", "--access-key", "A"];
    s.cli_run_bare(&other, &[("IWINV_SECRET_KEY", "S")]).await.ok();
    let listed = s.cli_run_bare(&["context", "list", "--json"], &[]).await.ok().rows();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let active: Vec<&str> = listed.iter().filter(|c| c["active"] == true).map(|c| str_of(c, "name")).collect();
    assert_eq!(active, ["other"], "the last created is active");
    assert_eq!(listed[0]["ca_file"], ca_file);
    assert!(!s.cli_run_bare(&["context", "list"], &[]).await.ok().stdout.contains(SECRET_KEY), "no secrets shown");
    s.cli_run_bare(&["--context", "local", "zones"], &[]).await.ok();
    s.cli_run_bare(&["context", "use", "locl"], &[]).await.failed().stderr_has("did you mean `local`?");
    s.cli_run_bare(&["context", "use", "local"], &[]).await.ok();
    s.cli_run_bare(&["zones"], &[]).await.ok();
    s.cli_run_bare(&["--context", "nope", "zones"], &[]).await.failed().stderr_has("local, other");
    s.cli_run_bare(&["context", "delete", "other"], &[]).await.ok();
}

#[tokio::test]
async fn completions_and_the_man_page_are_generated() {
    let s = Server::start().await;
    for shell in ["bash", "zsh", "fish"] {
        let script = s.cli_run_bare(&["completion", shell], &[]).await.ok();
        script.stdout_has("openwinv").stdout_has("instances");
    }
    s.cli_run_bare(&["man"], &[]).await.ok().stdout_has(".TH openwinv").stdout_has("instances");
    let help = s.cli_run_bare(&["instances", "create", "--help"], &[]).await.ok();
    help.stdout_has("building").stdout_has("pending");
    s.cli_run_bare(&["instances", "list", "--help"], &[]).await.ok().stdout_has("building");
}
