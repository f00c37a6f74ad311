//! Harness for end-to-end tests: starts the real `openwinv` binary on a port the OS picks, with a
//! private data directory and a private database (SQLite, or a fresh PostgreSQL database when
//! `OPENWINV_TEST_STORE=postgres`), and talks to it over HTTP with signed requests.
//!
//! Nothing is skipped: asking for PostgreSQL without `OPENWINV_TEST_DATABASE_URL` fails the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openwinv_wire::signing;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ACCESS_KEY: &str = "TESTACCESSKEY0000001";
pub const SECRET_KEY: &str = "test-secret-key-0123456789abcdefghij";
/// A valid OpenSSH public key for tests that need one.
pub const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example";

/// How long `wait_operation` and `wait_status` poll by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

pub mod browser;
pub mod console;
pub mod guest;
pub mod hosts;
pub mod lifecycle;
pub mod web;

/// Path of the `openwinv` binary built alongside the tests (`target/<profile>/openwinv`).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("OPENWINV_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("deps dir").parent().expect("profile dir");
    let bin = dir.join("openwinv");
    assert!(bin.exists(), "{} is missing: build the workspace first (cargo build --workspace)", bin.display());
    bin
}

#[derive(Debug, Clone)]
enum StoreKind {
    Sqlite,
    Postgres { base_url: String },
}

fn store_kind() -> StoreKind {
    match std::env::var("OPENWINV_TEST_STORE").as_deref() {
        Ok("postgres") => match std::env::var("OPENWINV_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => StoreKind::Postgres { base_url: url },
            _ => panic!(
                "OPENWINV_TEST_STORE=postgres needs OPENWINV_TEST_DATABASE_URL (scripts/test starts a private PostgreSQL)"
            ),
        },
        Ok("sqlite") | Err(_) => StoreKind::Sqlite,
        Ok(other) => panic!("OPENWINV_TEST_STORE must be sqlite or postgres, not {other}"),
    }
}

/// Which store this test run uses, for assertions that name it.
pub fn store_name() -> &'static str {
    match store_kind() {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Postgres { .. } => "postgres",
    }
}

/// A private PostgreSQL database, dropped with the server.
struct PgDatabase {
    base_url: String,
    name: String,
}

impl PgDatabase {
    async fn create(base_url: &str) -> PgDatabase {
        let name = format!("owt_{}", rand::random::<u64>());
        let mut conn = sqlx::postgres::PgConnection::connect(base_url).await.expect("connect to the test PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
        PgDatabase { base_url: base_url.to_owned(), name }
    }

    fn url(&self) -> String {
        let mut u = reqwest::Url::parse(&self.base_url).expect("OPENWINV_TEST_DATABASE_URL is a URL");
        u.set_path(&format!("/{}", self.name));
        u.to_string()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let base = self.base_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::postgres::PgConnection::connect(&base).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

/// An empty database of the store this run tests (SQLite file or private PostgreSQL database),
/// for tests of the store layer itself; removed on drop.
pub struct TestDatabase {
    pub url: String,
    _pg: Option<PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn new() -> TestDatabase {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = TestDatabase::in_dir(dir.path()).await;
        db._dir = Some(dir);
        db
    }

    /// A database whose SQLite file (if SQLite) is `dir/openwinv.db`; the caller keeps `dir`.
    async fn in_dir(dir: &Path) -> TestDatabase {
        let (pg, url) = match store_kind() {
            StoreKind::Sqlite => (None, format!("sqlite://{}?mode=rwc", dir.join("openwinv.db").display())),
            StoreKind::Postgres { base_url } => {
                let db = PgDatabase::create(&base_url).await;
                let url = db.url();
                (Some(db), url)
            }
        };
        TestDatabase { url, _pg: pg, _dir: None }
    }
}

/// What a CLI run printed.
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// Asserts exit status 0 and returns the run.
    #[track_caller]
    pub fn ok(self) -> CliRun {
        assert_eq!(self.code, 0, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Asserts exit status 1 (a failure the CLI reported, not a usage error).
    #[track_caller]
    pub fn failed(self) -> CliRun {
        assert_eq!(self.code, 1, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// stdout as the JSON array `--json` prints.
    #[track_caller]
    pub fn rows(&self) -> Vec<Value> {
        match serde_json::from_str(&self.stdout) {
            Ok(Value::Array(rows)) => rows,
            _ => panic!("stdout is not a JSON array:\n{}\nstderr:\n{}", self.stdout, self.stderr),
        }
    }

    /// The one row of a `--json` detail answer.
    #[track_caller]
    pub fn row(&self) -> Value {
        let rows = self.rows();
        assert_eq!(rows.len(), 1, "{}", self.stdout);
        rows.into_iter().next().unwrap()
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &CliRun {
        assert!(self.stdout.contains(needle), "`{needle}` not in stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &CliRun {
        assert!(self.stderr.contains(needle), "`{needle}` not in stderr:\n{}\nstdout:\n{}", self.stderr, self.stdout);
        self
    }
}

/// A running `openwinv serve`.
pub struct Server {
    pub endpoint: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub admin_token: String,
    /// Lines the server printed on stdout since its last start.
    pub stdout: Arc<Mutex<Vec<String>>>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    starts: u32,
    clock_offset: i64,
    wait_timeout: Duration,
    http: reqwest::Client,
    _db: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

/// An answer: status, headers and the JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error_code(&self) -> &str {
        self.json["error_code"].as_str().unwrap_or("")
    }

    pub fn result(&self) -> &Vec<Value> {
        self.json["result"].as_array().unwrap_or_else(|| panic!("result is not an array: {}", self.text))
    }

    /// Asserts an error answer with this status and error_code and the envelope's shape.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.error_code()), (status, code), "body: {}", self.text);
        let expected = openwinv_wire::ErrorCode::parse(code).expect("a catalog code").code();
        assert_eq!(self.json["code"], expected, "body: {}", self.text);
        assert_eq!(self.json["result"], "error", "body: {}", self.text);
        assert!(!self.json["message"].as_str().unwrap_or("").is_empty(), "empty message: {}", self.text);
    }

    /// Asserts a success envelope and returns its rows.
    #[track_caller]
    pub fn ok_rows(&self) -> &Vec<Value> {
        assert_eq!(self.status, 200, "body: {}", self.text);
        assert_eq!(self.json["code"], "0x00", "body: {}", self.text);
        assert_eq!(self.json["error_code"], "SUCCESS", "body: {}", self.text);
        self.result()
    }
}

/// A request body in one of the encodings the API accepts.
pub enum Body {
    Json(Value),
    Form(Vec<(String, String)>),
    Multipart(Vec<(String, String)>),
    Raw { content_type: String, bytes: Vec<u8> },
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&[], &[]).await
    }

    /// Starts a server with extra `serve` flags and environment variables.
    pub async fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let db = TestDatabase::in_dir(dir.path()).await;
        let database_url = db.url.clone();
        let mut server = Server {
            endpoint: String::new(),
            data_dir,
            database_url,
            admin_token: String::new(),
            stdout: Arc::default(),
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            starts: 0,
            clock_offset: 0,
            wait_timeout: DEFAULT_WAIT,
            http: reqwest::Client::new(),
            _db: Some(db),
            _dir: dir,
        };
        server.spawn().await;
        server
    }

    /// A second server process on the same database, with its own data directory and the same
    /// encryption key and operator token.
    pub async fn start_sharing(first: &Server, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = std::fs::read_to_string(first.data_path("encryption-key")).expect("encryption key");
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--encryption-key".into(),
            key.trim().to_owned(),
            "--admin-token".into(),
            first.admin_token.clone(),
        ]);
        let mut server = Server {
            endpoint: String::new(),
            data_dir: dir.path().join("data"),
            database_url: first.database_url.clone(),
            admin_token: String::new(),
            stdout: Arc::default(),
            args: all,
            envs: first.envs.clone(),
            child: None,
            starts: 0,
            clock_offset: first.clock_offset,
            wait_timeout: first.wait_timeout,
            http: reqwest::Client::new(),
            _db: None,
            _dir: dir,
        };
        server.spawn().await;
        server.admin_token = first.admin_token.clone();
        server
    }

    /// The server process's id (to read its `/proc` entries).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).expect("the server is running")
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.parent().unwrap().join(format!("server-{}.log", self.starts))
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--database")
            .arg(&self.database_url)
            .args(&self.args)
            .env("OPENWINV_BOOTSTRAP_ACCESS_KEY", ACCESS_KEY)
            .env("OPENWINV_BOOTSTRAP_SECRET_KEY", SECRET_KEY)
            .env("RUST_LOG", "warn")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start openwinv");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        self.stdout = lines.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let endpoint = match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(e)) => e,
            _ => {
                let _ = child.start_kill();
                panic!(
                    "openwinv did not start; its log:\n{}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
        };
        self.endpoint = endpoint;
        self.child = Some(child);
        if let Ok(token) = std::fs::read_to_string(self.data_dir.join("admin-token")) {
            self.admin_token = token.trim().to_owned();
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit; returns its exit status.
    pub async fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(pid) = child.id() {
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = child.kill().await;
                panic!("openwinv did not stop within 20 s of SIGTERM");
            }
        }
    }

    /// Kills the server with SIGKILL (no chance to clean up).
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// How long `wait_operation` and `wait_status` poll before failing (30 s unless set; real
    /// machines under TCG need more).
    pub fn set_wait_timeout(&mut self, timeout: Duration) {
        self.wait_timeout = timeout;
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The server's clock in Unix seconds (through the operator API).
    pub async fn server_time(&self) -> i64 {
        let r = self.admin(Method::GET, "/admin/v1/clock", None).await;
        r.ok_rows()[0]["unix"].as_i64().expect("unix")
    }

    /// Re-reads the server clock so that signatures use its time.
    pub async fn sync_clock(&mut self) {
        let now = self.server_time().await;
        self.clock_offset = now - unix_now();
    }

    /// Signature headers for `path` (no query) at `timestamp`.
    pub fn signature(key: &str, secret: &str, timestamp: i64, path: &str) -> Vec<(String, String)> {
        vec![
            ("X-iwinv-Timestamp".into(), timestamp.to_string()),
            ("X-iwinv-Credential".into(), key.into()),
            ("X-iwinv-Signature".into(), signing::sign(secret, &timestamp.to_string(), path)),
        ]
    }

    pub fn now(&self) -> i64 {
        unix_now() + self.clock_offset
    }

    /// A request signed with the bootstrap key.
    pub async fn call(&self, method: Method, path_and_query: &str, body: Option<Body>) -> Resp {
        self.call_as(ACCESS_KEY, SECRET_KEY, method, path_and_query, body).await
    }

    pub async fn get(&self, path_and_query: &str) -> Resp {
        self.call(Method::GET, path_and_query, None).await
    }

    pub async fn call_as(&self, key: &str, secret: &str, method: Method, pq: &str, body: Option<Body>) -> Resp {
        let path = signing::signed_path(pq);
        let headers = Server::signature(key, secret, self.now(), path);
        self.raw(method, pq, &headers, body).await
    }

    /// A request with exactly these headers.
    pub async fn raw(&self, method: Method, pq: &str, headers: &[(String, String)], body: Option<Body>) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.endpoint, pq));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req = match body {
            None => req,
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Form(pairs)) => req.form(&pairs),
            Some(Body::Multipart(pairs)) => {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in pairs {
                    form = form.text(k, v);
                }
                req.multipart(form)
            }
            Some(Body::Raw { content_type, bytes }) => req.header("content-type", content_type).body(bytes),
        };
        let resp = req.send().await.expect("HTTP request to openwinv");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, headers, text, json }
    }

    /// An operator API call.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let headers = vec![("Authorization".to_owned(), format!("Bearer {}", self.admin_token))];
        self.raw(method, path, &headers, body.map(Body::Json)).await
    }

    /// Creates an account and a key for it; returns (access key, secret key).
    pub async fn new_account(&self, name: &str, key_options: Value) -> (String, String) {
        self.admin(Method::POST, "/admin/v1/accounts", Some(serde_json::json!({"name": name}))).await.ok_rows();
        let r = self.admin(Method::POST, &format!("/admin/v1/accounts/{name}/keys"), Some(key_options)).await;
        let row = &r.ok_rows()[0];
        (row["access_key"].as_str().unwrap().to_owned(), row["secret_key"].as_str().unwrap().to_owned())
    }

    /// Runs the CLI binary against this server with the bootstrap key; returns (exit code, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let run = self.cli_run(args).await;
        (run.code, run.stdout, run.stderr)
    }

    /// Runs the CLI binary with the bootstrap key and the operator token.
    pub async fn cli_run(&self, args: &[&str]) -> CliRun {
        self.run_cli(ACCESS_KEY, SECRET_KEY, true, args).await
    }

    /// Runs the CLI binary with another key pair (and no operator token).
    pub async fn cli_run_as(&self, key: &str, secret: &str, args: &[&str]) -> CliRun {
        self.run_cli(key, secret, false, args).await
    }

    async fn run_cli(&self, key: &str, secret: &str, operator: bool, args: &[&str]) -> CliRun {
        let mut cmd = self.cli_command(args);
        cmd.env("IWINV_ENDPOINT", &self.endpoint).env("IWINV_ACCESS_KEY", key).env("IWINV_SECRET_KEY", secret);
        if operator {
            cmd.env("OPENWINV_ADMIN_ENDPOINT", &self.endpoint).env("OPENWINV_ADMIN_TOKEN", &self.admin_token);
        }
        Self::finish(cmd).await
    }

    /// Runs the CLI binary with no credentials in its environment but `envs`: no `IWINV_*` or
    /// `OPENWINV_*` variable of this process, and a home of its own (`cli-home` beside the data
    /// directory, for contexts), so that it finds what a user's machine would give it.
    pub async fn cli_run_bare(&self, args: &[&str], envs: &[(&str, &str)]) -> CliRun {
        let mut cmd = self.cli_command(args);
        for (name, _) in std::env::vars() {
            if name.starts_with("IWINV_") || name.starts_with("OPENWINV_") {
                cmd.env_remove(name);
            }
        }
        let home = self.data_dir.parent().unwrap().join("cli-home");
        std::fs::create_dir_all(&home).expect("create the CLI home");
        cmd.env("HOME", &home).env("XDG_CONFIG_HOME", home.join(".config"));
        cmd.envs(envs.iter().copied());
        Self::finish(cmd).await
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args).env_remove("IWINV_CONFIG").env_remove("COLUMNS").current_dir(self.data_dir.parent().unwrap());
        cmd
    }

    async fn finish(mut cmd: Command) -> CliRun {
        let out = cmd.output().await.expect("run the openwinv CLI");
        CliRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn data_path(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    /// A direct connection to the server's database, for assertions the API cannot make
    /// (leaked addresses, which process ran what).
    pub async fn db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&self.database_url)
            .await
            .expect("connect to the test database")
    }

    /// Runs a query returning one integer.
    pub async fn db_count(&self, sql: &str) -> i64 {
        let pool = self.db().await;
        let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.expect(sql);
        pool.close().await;
        n
    }

    /// Polls an operation until it is no longer running; returns its row.
    pub async fn wait_operation(&self, operation_id: &str) -> Value {
        let deadline = std::time::Instant::now() + self.wait_timeout;
        // At least 600 polls as well: a loaded host makes each poll slower.
        for i in 0.. {
            if i >= 600 && std::time::Instant::now() >= deadline {
                break;
            }
            let r = self.get(&format!("/v1/operations/{operation_id}")).await;
            let row = r.ok_rows()[0].clone();
            if row["status"] != "running" {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("operation {operation_id} still running after {:?}", self.wait_timeout);
    }

    /// Polls an instance until its status is `status`; returns the row.
    pub async fn wait_status(&self, instance_id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        let deadline = std::time::Instant::now() + self.wait_timeout;
        for i in 0.. {
            if i >= 600 && std::time::Instant::now() >= deadline {
                break;
            }
            let r = self.get(&format!("/v1/instances/{instance_id}")).await;
            if r.status == 200 {
                last = r.ok_rows()[0].clone();
                if last["status"] == status {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance {instance_id} did not become {status} within {:?}; last: {last}", self.wait_timeout);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// File mode bits (e.g. 0o600).
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}
