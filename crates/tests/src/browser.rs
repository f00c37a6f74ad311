//! Headless Chromium on a console link, through `tests/browser/console.mjs` (playwright-core
//! driving the system's Chromium). Missing tools fail the test with what to install; nothing is
//! skipped.
//!
//! Needs: node >= 18, Chromium at /usr/bin/chromium (or `$CHROMIUM`), and `npm ci` run in
//! tests/browser.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// How long the browser may take to show a line (Chromium's first start on a busy host is slow).
pub const BROWSER_TIMEOUT_SECS: u64 = 90;

pub fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// Fails, naming the fix, unless node, Chromium and the script's dependencies are all there.
pub fn require_browser_tools() {
    let node = std::process::Command::new("node").arg("--version").output();
    let version = match node {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => panic!("the browser console test needs node >= 18 on PATH (Debian: apt-get install -y nodejs npm)"),
    };
    let major: u32 = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(major >= 18, "the browser console test needs node >= 18, found {version}");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "the browser console test needs Chromium at {chromium}: apt-get install -y chromium"
    );
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    assert!(playwright.exists(), "{} is missing: run `npm ci` in {}", playwright.display(), browser_dir().display());
}

/// Runs `node console.mjs <link> <args…>`; its exit status and output.
pub async fn console_mjs(link: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("node");
    cmd.current_dir(browser_dir())
        .arg("console.mjs")
        .arg(link)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(BROWSER_TIMEOUT_SECS + 60), cmd.output())
        .await
        .expect("console.mjs did not finish")
        .expect("run node tests/browser/console.mjs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
