//! The `openwinv` client and operator commands, run as a user runs them, against a live server:
//! tables by default, the server's own rows with `--json`, errors with hints and exit status 1,
//! and `--wait` following operations to their end.

use openwinv_tests::{CliRun as Run, Server};
use serde_json::Value;

use openwinv_tests::ED25519;
const CREATE: [&str; 8] =
    ["instances", "create", "--zone", "KR1-Z01", "--image", "IMG-ubuntu-2404", "--flavor", "ss1.c1m1"];

async fn cli(s: &Server, args: &[&str]) -> Run {
    s.cli_run(args).await
}

/// The CLI with another key pair.
async fn cli_as(s: &Server, key: &str, secret: &str, args: &[&str]) -> Run {
    s.cli_run_as(key, secret, args).await
}

fn str_of<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or_else(|| panic!("no string `{key}` in {row}"))
}

/// The operation id a command without `--wait` names on stderr.
#[track_caller]
fn operation_in(run: &Run) -> String {
    let at = run.stderr.find("OP-").unwrap_or_else(|| panic!("no operation in stderr:\n{}", run.stderr));
    run.stderr[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect()
}

fn fast() -> [&'static str; 2] {
    ["--sim-delay", "0"]
}

#[tokio::test]
async fn catalog_commands_print_tables_and_the_servers_rows() {
    let s = Server::start().await;
    cli(&s, &["zones"]).await.ok().stdout_has("서울 1").stdout_has("KR1-Z01");
    let zones = cli(&s, &["zones", "--json"]).await.ok().rows();
    assert_eq!(zones.len(), 3);
    assert_eq!(&zones, s.get("/v1/zones").await.ok_rows(), "--json prints the server's rows as sent");

    let gpu = cli(&s, &["flavors", "--type", "gpu"]).await.ok();
    gpu.stdout_has("sg1.c8m32.t4");
    assert!(!gpu.stdout.contains("ss1.c1m1"), "{}", gpu.stdout);
    let gpu = cli(&s, &["flavors", "--type", "gpu", "--json"]).await.ok().rows();
    assert!(!gpu.is_empty());
    assert!(gpu.iter().all(|f| f["spec"]["type"] == "gpu"), "{gpu:?}");

    let one = cli(&s, &["flavors", "show", "ss1.c1m1", "--json"]).await.ok().row();
    assert_eq!(one["flavor_id"], "ss1.c1m1");
    assert_eq!(one, s.get("/v1/flavors/ss1.c1m1").await.ok_rows()[0]);
    let masked = cli(&s, &["flavors", "show", "ss1.c1m1", "--fields", "1", "--json"]).await.ok().row();
    assert_eq!(masked.as_object().unwrap().len(), 1, "{masked}");
    cli(&s, &["flavors", "show", "ss1.c1m1"]).await.ok().stdout_has("MONTHLY").stdout_has("₩");

    let ubuntu = cli(&s, &["images", "--os", "ubuntu"]).await.ok();
    ubuntu.stdout_has("IMG-ubuntu-2404");
    assert!(!ubuntu.stdout.contains("IMG-debian-12"), "{}", ubuntu.stdout);
    cli(&s, &["volume-types"]).await.ok().stdout_has("ssd").stdout_has("sata");

    let missing = cli(&s, &["images", "show", "IMG-nope"]).await.failed();
    missing.stderr_has("error: ID_INVALID").stderr_has("hint: ");
    assert!(missing.stdout.is_empty(), "{}", missing.stdout);
    // A usage error is clap's, with status 2.
    assert_eq!(cli(&s, &["flavors", "show"]).await.code, 2);
}

#[tokio::test]
async fn ssh_keys_and_scripts_are_created_listed_and_deleted() {
    let s = Server::start().await;
    let key = cli(&s, &["ssh-keys", "create", "--name", "laptop", "--public-key", ED25519, "--json"]).await.ok().row();
    let key_id = str_of(&key, "ssh_key_id").to_owned();
    assert!(str_of(&key, "fingerprint").starts_with("SHA256:"));
    cli(&s, &["ssh-keys", "list"]).await.ok().stdout_has(&key_id).stdout_has("laptop");
    let listed = cli(&s, &["ssh-keys", "--json"]).await.ok().rows();
    assert_eq!(listed, vec![key.clone()]);
    cli(&s, &["ssh-keys", "delete", &key_id]).await.ok().stdout_has(&key_id);
    assert!(cli(&s, &["ssh-keys", "--json"]).await.ok().rows().is_empty());
    cli(&s, &["ssh-keys", "delete", &key_id]).await.failed().stderr_has("NOT_FOUND").stderr_has("hint: ");

    let script = cli(&s, &["scripts", "create", "--name", "boot", "--content", "#!/bin/sh\necho hi\n"]).await.ok();
    script.stdout_has("boot").stdout_has("echo hi");
    let scripts = cli(&s, &["scripts", "list", "--json"]).await.ok().rows();
    assert_eq!(scripts.len(), 1);
    let script_id = str_of(&scripts[0], "user_script_id").to_owned();
    cli(&s, &["scripts"]).await.ok().stdout_has(&script_id).stdout_has("#!/bin/sh");
    cli(&s, &["scripts", "delete", &script_id]).await.ok();
    assert!(cli(&s, &["scripts", "--json"]).await.ok().rows().is_empty());
}

#[tokio::test]
async fn operators_manage_accounts_keys_and_the_clock() {
    let s = Server::start().await;
    cli(&s, &["admin", "accounts", "create", "ci"]).await.ok().stdout_has("ci");
    cli(&s, &["admin", "accounts", "list"]).await.ok().stdout_has("ci").stdout_has("dev");

    let issued = cli(&s, &["admin", "keys", "create", "--account", "ci", "--rate-limit", "0"]).await.ok();
    issued.stdout_has("SECRET KEY").stdout_has("unlimited").stderr_has("shown only now");
    let issued =
        cli(&s, &["admin", "keys", "create", "--account", "ci", "--rate-limit", "0", "--json"]).await.ok().row();
    let (key, secret) = (str_of(&issued, "access_key"), str_of(&issued, "secret_key"));
    assert!(!key.is_empty() && !secret.is_empty());
    cli_as(&s, key, secret, &["zones"]).await.ok().stdout_has("서울 1");
    // The new account sees only its own keys.
    cli_as(&s, key, secret, &["ssh-keys", "create", "--name", "ci-key", "--public-key", ED25519]).await.ok();
    assert!(cli(&s, &["ssh-keys", "--json"]).await.ok().rows().is_empty());
    cli(&s, &["admin", "ssh-keys", "list", "--account", "ci"]).await.ok().stdout_has("ci-key");
    cli_as(&s, key, "wrong-secret", &["zones"]).await.failed().stderr_has("INVALID_SIGNATURE").stderr_has("hint: ");
    cli(&s, &["admin", "keys", "list", "--account", "ci", "--json"]).await.ok();

    let before = cli(&s, &["admin", "clock", "show", "--json"]).await.ok().row()["unix"].as_i64().unwrap();
    let after = cli(&s, &["admin", "clock", "advance", "1h", "--json"]).await.ok().row()["unix"].as_i64().unwrap();
    assert!((3600..3700).contains(&(after - before)), "{before} → {after}");
    // Signed requests now look an hour old: the CLI learns the server's time from the refusal and
    // signs again, saying so; an explicit --time-offset stays strict.
    cli(&s, &["zones"]).await.ok().stdout_has("서울 1").stderr_has("signed again with the server's time");
    cli(&s, &["--time-offset", "0", "zones"]).await.failed().stderr_has("CHECK_SIGNATURE").stderr_has("--time-offset");
    cli(&s, &["--time-offset", "3600", "zones"]).await.ok().stdout_has("서울 1");
}

#[tokio::test]
async fn an_instance_lives_and_dies_with_wait() {
    let s = Server::start_with(&fast(), &[]).await;
    let created = cli(&s, &[&CREATE[..], &["--name", "cli-web", "--wait"]].concat()).await.ok();
    created.stdout_has("PASSWORD").stdout_has("root").stdout_has("cli-web").stdout_has("active");
    created.stderr_has("instance.create").stderr_has("succeeded");

    cli(&s, &["instances", "list"]).await.ok().stdout_has("cli-web").stdout_has("active");
    let rows = cli(&s, &["instances", "list", "--name", "cli-web", "--json"]).await.ok().rows();
    assert_eq!(rows.len(), 1);
    let id = str_of(&rows[0], "instance_id").to_owned();
    assert_eq!(rows[0]["status"], "active");

    let shown = cli(&s, &["instances", "show", &id, "--json"]).await.ok().row();
    assert_eq!(shown, s.get(&format!("/v1/instances/{id}")).await.ok_rows()[0], "the server's row as sent");
    assert!(shown.get("default_account").is_none(), "no password by default: {shown}");
    let masked = cli(&s, &["instances", "show", &id, "--fields", "3", "--json"]).await.ok().row();
    assert_eq!(masked.as_object().unwrap().len(), 2, "{masked}");
    let secret = cli(&s, &["instances", "show", &id, "--fields", "262143", "--json"]).await.ok().row();
    assert_eq!(secret["default_account"]["username"], "root");
    cli(&s, &["instances", "show", &id]).await.ok().stdout_has("서울 1").stdout_has("PRIVATE IP");

    let off = cli(&s, &["instances", "shutdown", &id, "--wait"]).await.ok();
    off.stdout_has("off").stderr_has("instance.shutdown");
    cli(&s, &["instances", "shutdown", &id]).await.failed().stderr_has("CHECK_PARAM").stderr_has("status");
    cli(&s, &["instances", "console", &id]).await.failed().stderr_has("CHECK_CONSOLE").stderr_has("instances start");
    cli(&s, &["instances", "start", &id, "--wait"]).await.ok().stdout_has("active");
    cli(&s, &["instances", "console", &id]).await.ok().stdout_has("/console/");

    let edited = cli(&s, &["instances", "edit", &id, "--description", "from the CLI", "--json"]).await.ok().row();
    assert_eq!(edited["description"], "from the CLI");

    let deleted = cli(&s, &["instances", "delete", &id, "--wait"]).await.ok();
    deleted.stdout_has("deleted").stderr_has("instance.delete");
    cli(&s, &["instances", "show", &id]).await.failed().stderr_has("NOT_FOUND");
    assert!(cli(&s, &["instances", "--json"]).await.ok().rows().is_empty());
}

#[tokio::test]
async fn instance_actions_and_operations() {
    let s = Server::start_with(&fast(), &[]).await;
    // Without --wait: the receipt, and the operation to follow.
    let started = cli(&s, &[&CREATE[..], &["--count", "2", "--name", "pair"]].concat()).await.ok();
    started.stdout_has("pair-1").stdout_has("pair-2").stdout_has("building").stdout_has("OP-");
    started.stderr_has("operations wait");
    let op = operation_in(&started);
    let ended = cli(&s, &["operations", "wait", &op, "--json"]).await.ok().row();
    assert_eq!((ended["status"].as_str(), ended["kind"].as_str()), (Some("succeeded"), Some("instance.create")));
    cli(&s, &["operations", "show", &op]).await.ok().stdout_has("succeeded").stdout_has("instance.create");
    cli(&s, &["operations", "show", "OP-nope"]).await.failed().stderr_has("NOT_FOUND");

    // With --wait and --json: only the instances at the end, with their logins.
    let made =
        cli(&s, &[&CREATE[..], &["--count", "2", "--name", "duo", "--wait", "--json"]].concat()).await.ok().rows();
    assert_eq!(made.len(), 2);
    for row in &made {
        assert_eq!(row["status"], "active", "{row}");
        assert_eq!(row["default_account"]["username"], "root", "{row}");
    }
    let id = str_of(&made[0], "instance_id").to_owned();

    let rebooted = cli(&s, &["instances", "reboot", &id, "--hard", "--wait", "--json"]).await.ok().row();
    assert_eq!(rebooted["status"], "active");
    let rebuilt =
        cli(&s, &["instances", "rebuild", &id, "--image", "IMG-debian-12", "--wait", "--json"]).await.ok().row();
    assert_eq!(rebuilt["image"]["image_id"], "IMG-debian-12");
    let resized = cli(&s, &["instances", "resize", &id, "--flavor", "ss1.c2m4", "--wait", "--json"]).await.ok().row();
    assert_eq!(resized["flavor"]["flavor_id"], "ss1.c2m4");
    cli(&s, &["instances", "resize", &id, "--flavor", "ss1.c2m4"]).await.failed().stderr_has("UNAVAILABLE_FLAVOR");

    // The list filters reach the server.
    assert_eq!(cli(&s, &["instances", "--name", "duo", "--json"]).await.ok().rows().len(), 2);
    assert_eq!(cli(&s, &["instances", "--min-vcpu", "2", "--json"]).await.ok().rows().len(), 1);
    assert_eq!(cli(&s, &["instances", "--status", "off,error", "--json"]).await.ok().rows().len(), 0);
    assert_eq!(cli(&s, &["instances", "--all", "--page-size", "1", "--json"]).await.ok().rows().len(), 4);
    cli(&s, &["instances", "--page-size", "1"]).await.ok().stderr_has("page 1 of 4");

    // An Idempotency-Key replays the first answer instead of acting twice.
    let first = cli(&s, &["--idempotency-key", "stop-1", "instances", "shutdown", &id, "--json"]).await.ok().row();
    let again = cli(&s, &["--idempotency-key", "stop-1", "instances", "shutdown", &id]).await.ok();
    again.stderr_has("replayed").stdout_has(str_of(&first, "instance_id"));
}

#[tokio::test]
async fn failed_operations_exit_1_with_their_reason() {
    let s = Server::start_with(&fast(), &[]).await;
    let fault = cli(&s, &["admin", "faults", "add", "--kind", "instance.start", "--step", "power_on", "--json"])
        .await
        .ok()
        .row();
    assert_eq!((fault["mode"].as_str(), fault["effect"].as_str()), (Some("once"), Some("permanent")));
    let sticky =
        cli(&s, &["admin", "faults", "add", "--kind", "instance.reboot", "--step", "*", "--sticky", "--transient"])
            .await
            .ok();
    sticky.stdout_has("sticky").stdout_has("transient");
    let random =
        cli(&s, &["admin", "faults", "add", "--kind", "*", "--step", "*", "--random", "0.5", "--seed", "7", "--json"])
            .await
            .ok()
            .row();
    assert_eq!((random["mode"].as_str(), random["seed"].as_i64()), (Some("random"), Some(7)));
    let listed = cli(&s, &["admin", "faults", "list", "--json"]).await.ok().rows();
    assert_eq!(listed.len(), 3);
    cli(&s, &["admin", "faults", "list"]).await.ok().stdout_has("power_on").stdout_has("p = 0.5");
    cli(&s, &["admin", "faults", "clear", str_of(&random, "fault_id")]).await.ok().stdout_has("1");
    cli(&s, &["admin", "faults", "clear", "FAULT-nope"]).await.failed().stderr_has("NOT_FOUND");
    cli(&s, &["admin", "faults", "add", "--kind", "instance.nope", "--step", "*"])
        .await
        .failed()
        .stderr_has("CHECK_PARAM_ENUM");

    let made = cli(&s, &[&CREATE[..], &["--wait", "--json"]].concat()).await.ok().rows();
    let id = str_of(&made[0], "instance_id").to_owned();
    cli(&s, &["instances", "shutdown", &id, "--wait"]).await.ok();
    let failed = cli(&s, &["instances", "start", &id, "--wait"]).await.failed();
    failed.stdout_has("error").stderr_has("instance.start").stderr_has("failed").stderr_has("injected fault");
    failed.stderr_has("hint: ").stderr_has("operations show");
    // The once rule is used up: starting again works.
    cli(&s, &["instances", "start", &id, "--wait"]).await.ok().stdout_has("active");

    let cleared = cli(&s, &["admin", "faults", "clear", "--json"]).await.ok().row();
    assert!(cleared["cleared"].as_u64().unwrap() >= 1, "{cleared}");
    assert!(cli(&s, &["admin", "faults", "list", "--json"]).await.ok().rows().is_empty());
}

#[tokio::test]
async fn operators_step_operations_by_hand() {
    let s = Server::start_with(&["--sim-mode", "explicit"], &[]).await;
    let started = cli(&s, &[&CREATE[..], &["--name", "stepped"]].concat()).await.ok();
    let op = operation_in(&started);
    let timed_out = cli(&s, &["operations", "wait", &op, "--timeout", "1"]).await.failed();
    timed_out.stderr_has("still running").stderr_has(&format!("openwinv operations wait {op}"));
    assert_eq!(cli(&s, &["operations", "show", &op, "--json"]).await.ok().row()["status"], "running");
    for _ in 0..10 {
        let step = cli(&s, &["admin", "sim", "step", &op, "--json"]).await;
        if step.code != 0 {
            step.failed().stderr_has("NOT_FOUND");
            break;
        }
        assert_eq!(step.row()["operation_id"], op.as_str());
    }
    let ended = cli(&s, &["operations", "wait", &op, "--timeout", "30", "--json"]).await.ok().row();
    assert_eq!(ended["status"], "succeeded");
    cli(&s, &["admin", "sim", "step", &op]).await.failed().stderr_has("NOT_FOUND");
}

/// An instance made with `--wait`, for the volume and firewall commands to work on.
async fn an_instance(s: &Server, name: &str) -> String {
    let rows = cli(s, &[&CREATE[..], &["--name", name, "--wait", "--json"]].concat()).await.ok().rows();
    str_of(&rows[0], "instance_id").to_owned()
}

#[tokio::test]
async fn volumes_are_created_moved_and_deleted_with_wait() {
    let s = Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await;
    let instance = an_instance(&s, "cli-vol").await;

    let created = cli(
        &s,
        &["volumes", "create", "--instance", &instance, "--type", "ssd", "--size", "20", "--name", "data", "--wait"],
    )
    .await
    .ok();
    created.stdout_has("data").stdout_has("in-use").stdout_has("20 GB");
    created.stderr_has("succeeded");

    let rows = cli(&s, &["volumes", "list", "--instance", &instance, "--json"]).await.ok().rows();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let volume = str_of(&rows[0], "block_storage_id").to_owned();
    assert_eq!(rows[0]["status"], "in-use");
    assert_eq!(rows[0]["instance_id"], instance.as_str());
    assert_eq!(rows[0]["type"], "ssd");
    cli(&s, &["volumes"]).await.ok().stdout_has(&volume).stdout_has("data");
    let shown = cli(&s, &["volumes", "show", &volume, "--json"]).await.ok().row();
    assert_eq!(shown, s.get(&format!("/v1/block-storages/{volume}")).await.ok_rows()[0], "the server's row as sent");

    let detached = cli(&s, &["volumes", "detach", &volume, "--wait", "--json"]).await.ok().row();
    assert_eq!(detached["status"], "available");
    assert!(detached["instance_id"].is_null(), "{detached}");

    let attached = cli(&s, &["volumes", "attach", &volume, &instance, "--wait", "--json"]).await.ok().row();
    assert_eq!(attached["status"], "in-use");
    assert_eq!(attached["instance_id"], instance.as_str());

    // Attached volumes cannot be deleted; without --wait the receipt names the operation.
    cli(&s, &["volumes", "delete", &volume]).await.failed();
    let detach = cli(&s, &["volumes", "detach", &volume]).await.ok();
    detach.stdout_has("detaching");
    let op = operation_in(&detach);
    cli(&s, &["operations", "wait", &op]).await.ok().stdout_has("succeeded");

    cli(&s, &["volumes", "delete", &volume, "--wait"]).await.ok().stdout_has(&format!("{volume} deleted"));
    cli(&s, &["volumes", "show", &volume]).await.failed();
    assert!(cli(&s, &["volumes", "--json"]).await.ok().rows().is_empty());
}

#[tokio::test]
async fn firewalls_and_their_rules_round_trip() {
    let s = Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await;
    let instance = an_instance(&s, "cli-fw").await;

    let fw = cli(&s, &["firewalls", "create", "--title", "web-servers", "--content", "HTTP & SSH", "--json"])
        .await
        .ok()
        .row();
    let id = str_of(&fw, "firewall_id").to_owned();
    assert_eq!(fw["icmp"], "Y");
    assert_eq!(fw["content"], "HTTP &amp; SSH", "HTML-escaped as iwinv does");

    let rule = cli(
        &s,
        &[
            "firewalls",
            "rules",
            "add",
            &id,
            "--bound",
            "IN",
            "--protocol",
            "TCP",
            "--port",
            "22",
            "--ip",
            "0.0.0.0/0",
            "--title",
            "ssh",
            "--json",
        ],
    )
    .await
    .ok()
    .row();
    let rule_id = rule["rule_id"].as_i64().unwrap().to_string();
    cli(
        &s,
        &[
            "firewalls",
            "rules",
            "add",
            &id,
            "--bound",
            "IN",
            "--protocol",
            "TCP",
            "--port",
            "80-81",
            "--ip",
            "10.0.0.0/8",
            "--title",
            "web",
        ],
    )
    .await
    .ok()
    .stdout_has("80-81");
    let rules = cli(&s, &["firewalls", "rules", "list", &id, "--json"]).await.ok().rows();
    assert_eq!(rules.len(), 2);
    cli(&s, &["firewalls", "rules", "list", &id]).await.ok().stdout_has("PROTOCOL").stdout_has("10.0.0.0/8");
    let edited = cli(&s, &["firewalls", "rules", "edit", &id, &rule_id, "--port", "2222", "--json"]).await.ok().row();
    assert_eq!(edited["port"], "2222");
    assert_eq!(edited["title"], "ssh", "omitted fields are kept");

    let changed = cli(&s, &["firewalls", "edit", &id, "--icmp", "N", "--json"]).await.ok().row();
    assert_eq!(changed["icmp"], "N");
    assert_eq!(changed["title"], "web-servers");

    let attached = cli(&s, &["firewalls", "attach", &id, &instance, "--wait", "--json"]).await.ok().row();
    assert_eq!(attached["instances"], serde_json::json!([instance]));
    let ids = cli(&s, &["firewalls", "instances", &id, "--json"]).await.ok().rows();
    assert_eq!(ids, [Value::from(instance.as_str())]);
    cli(&s, &["firewalls", "instances", &id]).await.ok().stdout_has(&instance);
    cli(&s, &["firewalls", "show", &id]).await.ok().stdout_has("web-servers").stdout_has("#2 IN TCP 80-81");
    cli(&s, &["firewalls", "list"]).await.ok().stdout_has(&id);
    cli(&s, &["firewalls", "delete", &id]).await.failed();

    cli(&s, &["firewalls", "detach", &id, &instance, "--wait"]).await.ok().stdout_has("web-servers");
    assert!(cli(&s, &["firewalls", "instances", &id, "--json"]).await.ok().rows().is_empty());
    cli(&s, &["firewalls", "rules", "delete", &id, &rule_id]).await.ok().stdout_has("deleted");
    assert_eq!(cli(&s, &["firewalls", "rules", "list", &id, "--json"]).await.ok().rows().len(), 1);
    let deleted = cli(&s, &["firewalls", "delete", &id, "--json"]).await.ok().rows();
    assert_eq!(deleted, [Value::from("success")]);
    cli(&s, &["firewalls", "show", &id]).await.failed();
    assert!(cli(&s, &["firewalls", "--json"]).await.ok().rows().is_empty());
}

#[tokio::test]
async fn operators_set_account_quotas() {
    let s = Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await;
    let defaults = cli(&s, &["admin", "accounts", "list", "--json"]).await.ok().rows();
    let dev = defaults.iter().find(|a| a["name"] == "dev").expect("the dev account");
    let default_vcpu = dev["quota"]["vcpu"].as_i64().unwrap();

    let set =
        cli(&s, &["admin", "accounts", "quota", "dev", "--instances", "1", "--vcpu", "3", "--json"]).await.ok().row();
    assert_eq!(set["quota"]["instances"], 1);
    assert_eq!(set["quota"]["vcpu"], 3);
    cli(&s, &["admin", "accounts", "list"]).await.ok().stdout_has("STORAGE");

    an_instance(&s, "only-one").await;
    cli(&s, &CREATE).await.failed();

    let reset = cli(&s, &["admin", "accounts", "quota", "dev", "--json"]).await.ok().row();
    assert_eq!(reset["quota"]["vcpu"], default_vcpu);
    assert_eq!(reset["quota"], dev["quota"], "back to the server defaults");
    cli(&s, &["admin", "accounts", "quota", "nobody", "--vcpu", "1"]).await.failed();
}

#[tokio::test]
async fn the_live_bill_explains_two_hours_of_an_instance() {
    let s = Server::start_with(&["--sim-delay", "0", "--default-rate-limit", "0"], &[]).await;
    let instance = an_instance(&s, "cli-bill").await;
    cli(&s, &["admin", "clock", "advance", "2h"]).await.ok();
    // The server clock is two hours ahead now; sign with it.
    fn shifted<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--time-offset", "7200"], args].concat()
    }

    let table = cli(&s, &shifted(&["bill", "live", "--explain"])).await.ok();
    table.stdout_has("BILL-live").stdout_has("cli-bill").stdout_has("₩");
    assert!(!table.stdout.contains("₩0 "), "a non-zero amount:\n{}", table.stdout);

    let live = cli(&s, &shifted(&["bill", "live", "--explain", "--json"])).await.ok().row();
    let price = live["price"].as_i64().expect("an integer price");
    assert!(price > 0, "{live}");
    let items = live["items"].as_array().expect("items with --explain");
    assert!(items.iter().any(|i| i["id"] == instance.as_str()), "{live}");
    let sum: i64 = items.iter().map(|i| i["amount"].as_i64().unwrap()).sum();
    assert_eq!(sum, price, "{live}");

    let plain = cli(&s, &shifted(&["bill", "live", "--json"])).await.ok().row();
    assert!(plain.get("items").is_none(), "{plain}");
    cli(&s, &shifted(&["bill", "show", "BILL-nope"])).await.failed().stderr_has("NOT_FOUND");
    cli(&s, &["admin", "bills", "pay", "BILL-nope"]).await.failed().stderr_has("NOT_FOUND");
}
