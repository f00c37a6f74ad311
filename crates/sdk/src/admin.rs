//! The operator client of `/admin/v1` [ext]: bearer-token auth, the same envelope as `/v1`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use openwinv_wire::Envelope;
use openwinv_wire::admin::{
    AccessKey, Account, AdvanceClock, CatalogImportSummary, ClockState, ConsoleUser, IssuedKey, KeyUpdate, NewAccount,
    NewConsoleUser, NewKey, QuotaUpdate, SetClock,
};
use openwinv_wire::hosts::{
    DeadHost, DestroyedStray, Evacuation, Host, IssuedHost, NewHost, NewPlacement, Overcommit, OvercommitUpdate,
    Placement,
};
use openwinv_wire::images::ImageFiles;
use openwinv_wire::keys::{NewSshKey, NewUserScript, SshKey, UserScript};
use openwinv_wire::operations::{Cleared, Fault, NewFault, SimStep};
use openwinv_wire::standin::{NewSnapshot, ResetDone, ResetRequest, SeedDone, SnapshotInfo};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::{DEFAULT_ENDPOINT, env};
use crate::error::{Error, Result};
use crate::pages::{Page, PageRequest};
use crate::query::NameQuery;
use crate::raw::RawLog;
use crate::response::first_row;
use crate::transport::Transport;

/// The data directory `openwinv serve` uses by default, which holds the `admin-token` file.
const DEFAULT_DATA_DIR: &str = "./openwinv-data";
/// How long an image upload may take in all, instead of the usual request timeout: disk images
/// are gigabytes.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Bytes read from an upload file at a time.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// The files of [`AdminClient::import_image_files`], read from disk as they are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageImport {
    /// Direct kernel boot: a kernel, an optional initrd and an optional root disk (qcow2 or raw)
    /// that instance root disks are overlays on.
    Kernel { kernel: PathBuf, initrd: Option<PathBuf>, cmdline: String, root_disk: Option<PathBuf> },
    /// A bootable disk image; `format` (`qcow2` or `raw`) is detected by the server when `None`.
    Disk { disk: PathBuf, format: Option<String> },
}

/// A client of the openwinv operator API.
#[derive(Clone)]
pub struct AdminClient {
    transport: Transport,
    token: String,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient").field("endpoint", &self.endpoint()).finish_non_exhaustive()
    }
}

impl AdminClient {
    pub fn new(endpoint: &str, token: impl Into<String>) -> Result<AdminClient> {
        let token = token.into().trim().to_owned();
        if token.is_empty() {
            return Err(Error::Config("the operator token must not be empty".into()));
        }
        Ok(AdminClient { transport: Transport::new(endpoint)?, token })
    }

    /// A client from `OPENWINV_ADMIN_ENDPOINT` (default `http://127.0.0.1:8080`) and
    /// `OPENWINV_ADMIN_TOKEN`, else the `admin-token` file of the data directory
    /// (`OPENWINV_DATA_DIR`, default `./openwinv-data`), as a local `openwinv serve` writes it;
    /// `IWINV_CA_FILE`, when set, is trusted as for [`crate::Client::from_env`].
    pub fn from_env() -> Result<AdminClient> {
        let endpoint = env("OPENWINV_ADMIN_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let token = match env("OPENWINV_ADMIN_TOKEN") {
            Some(t) => t,
            None => {
                let dir = env("OPENWINV_DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.into());
                let path = PathBuf::from(dir).join("admin-token");
                std::fs::read_to_string(&path).map_err(|e| {
                    Error::Config(format!(
                        "OPENWINV_ADMIN_TOKEN is not set and {} cannot be read ({e})",
                        path.display()
                    ))
                })?
            }
        };
        let admin = AdminClient::new(&endpoint, token)?;
        match env("IWINV_CA_FILE") {
            Some(path) => admin.with_ca_file(path),
            None => Ok(admin),
        }
    }

    /// Also trusts the certificates of a PEM file, such as the local CA that `openwinv tls ca`
    /// prints, for an `https` endpoint.
    pub fn with_ca_file(mut self, path: impl AsRef<std::path::Path>) -> Result<AdminClient> {
        self.transport = self.transport.with_ca_file(path.as_ref())?;
        Ok(self)
    }

    /// Connects to `addr` whenever the endpoint names `host`, as curl's `--resolve` does, so a
    /// client can keep the real endpoint (`https://api-kr.iwinv.kr`) and reach a local server; the
    /// certificate is still checked against `host`.
    pub fn with_resolve(mut self, host: &str, addr: std::net::SocketAddr) -> Result<AdminClient> {
        self.transport = self.transport.with_resolve(host, addr)?;
        Ok(self)
    }

    /// A client that keeps the `result` of every successful answer in `log`, as sent.
    pub fn with_raw_log(mut self, log: RawLog) -> AdminClient {
        self.transport = self.transport.with_raw_log(log);
        self
    }

    /// The endpoint as `scheme://host[:port]`.
    pub fn endpoint(&self) -> &str {
        self.transport.endpoint()
    }

    // Accounts.

    pub async fn accounts(&self) -> Result<Vec<Account>> {
        self.rows(self.request(Method::GET, &["accounts"])).await
    }

    pub async fn create_account(&self, name: &str) -> Result<Account> {
        let body = NewAccount { name: name.into() };
        self.row(self.request(Method::POST, &["accounts"]).json(&body)).await
    }

    /// Disables an account; its keys stop working until it is enabled again.
    pub async fn disable_account(&self, name: &str) -> Result<Account> {
        self.row(self.request(Method::POST, &["accounts", name, "disable"])).await
    }

    pub async fn enable_account(&self, name: &str) -> Result<Account> {
        self.row(self.request(Method::POST, &["accounts", name, "enable"])).await
    }

    /// Sets an account's quotas; each `None` goes back to the server default.
    pub async fn set_quota(&self, name: &str, quota: &QuotaUpdate) -> Result<Account> {
        self.row(self.request(Method::PUT, &["accounts", name, "quota"]).json(quota)).await
    }

    // Access keys.

    /// Issues a key for `account`. With `key.access_key` and `key.secret_key` both set, imports
    /// that pair instead; unset `rate_limit` and `allow` take the server defaults.
    pub async fn create_key(&self, account: &str, key: &NewKey) -> Result<IssuedKey> {
        self.row(self.request(Method::POST, &["accounts", account, "keys"]).json(key)).await
    }

    /// Imports an existing key pair for `account` (e.g. one issued by the real iwinv).
    pub async fn import_key(
        &self,
        account: &str,
        access_key: &str,
        secret_key: &str,
        rate_limit: Option<u32>,
        allow: Option<Vec<String>>,
    ) -> Result<IssuedKey> {
        let key =
            NewKey { access_key: Some(access_key.into()), secret_key: Some(secret_key.into()), rate_limit, allow };
        self.create_key(account, &key).await
    }

    /// Every key, or those of one account.
    pub async fn keys(&self, account: Option<&str>) -> Result<Vec<AccessKey>> {
        self.rows(self.request(Method::GET, &["keys"]).query(&[("account", account)])).await
    }

    /// Replaces each field set in `update`.
    pub async fn update_key(&self, access_key: &str, update: &KeyUpdate) -> Result<AccessKey> {
        self.row(self.request(Method::PUT, &["keys", access_key]).json(update)).await
    }

    pub async fn disable_key(&self, access_key: &str) -> Result<AccessKey> {
        self.row(self.request(Method::POST, &["keys", access_key, "disable"])).await
    }

    /// Deletes a key and returns it as it was.
    pub async fn delete_key(&self, access_key: &str) -> Result<AccessKey> {
        self.row(self.request(Method::DELETE, &["keys", access_key])).await
    }

    // Catalog.

    /// The whole catalog as TOML.
    pub async fn export_catalog(&self) -> Result<String> {
        self.transport.execute_text(self.request(Method::GET, &["catalog"])).await
    }

    /// Replaces the whole catalog with a TOML document.
    pub async fn import_catalog(&self, toml: &str) -> Result<CatalogImportSummary> {
        let request = self
            .request(Method::PUT, &["catalog"])
            .header(reqwest::header::CONTENT_TYPE, "application/toml")
            .body(toml.to_owned());
        self.row(request).await
    }

    // Image files (what a real driver boots for a catalog image).

    /// Uploads an image's files and sets its boot definition; importing again replaces them. The
    /// image must be in the catalog. Files are streamed from disk, never read whole.
    pub async fn import_image_files(&self, image_id: &str, import: &ImageImport) -> Result<ImageFiles> {
        // Text parts first: the server refuses a bad kind or format before the files are sent.
        let form = match import {
            ImageImport::Kernel { kernel, initrd, cmdline, root_disk } => {
                let mut form = Form::new().text("kind", "kernel").text("cmdline", cmdline.clone());
                form = file_part(form, "kernel", kernel).await?;
                if let Some(initrd) = initrd {
                    form = file_part(form, "initrd", initrd).await?;
                }
                if let Some(root_disk) = root_disk {
                    form = file_part(form, "root_disk", root_disk).await?;
                }
                form
            }
            ImageImport::Disk { disk, format } => {
                let mut form = Form::new().text("kind", "disk");
                if let Some(format) = format {
                    form = form.text("format", format.clone());
                }
                file_part(form, "disk", disk).await?
            }
        };
        let request =
            self.request(Method::POST, &["images", image_id, "files"]).multipart(form).timeout(UPLOAD_TIMEOUT);
        self.row(request).await
    }

    /// An image's boot definition and the files in its directory on the server's host.
    pub async fn image_files(&self, image_id: &str) -> Result<ImageFiles> {
        self.row(self.request(Method::GET, &["images", image_id, "files"])).await
    }

    // SSH keys and user scripts on behalf of an account.

    pub async fn ssh_keys(&self, account: &str, name: Option<&str>, page: PageRequest) -> Result<Page<SshKey>> {
        self.named_list(&["accounts", account, "ssh-keys"], name, page).await
    }

    pub async fn create_ssh_key(&self, account: &str, name: &str, public_key: &str) -> Result<SshKey> {
        let body = NewSshKey { name: name.into(), public_key: public_key.into() };
        self.row(self.request(Method::POST, &["accounts", account, "ssh-keys"]).json(&body)).await
    }

    pub async fn delete_ssh_key(&self, account: &str, ssh_key_id: &str) -> Result<SshKey> {
        let path = ["accounts", account, "ssh-keys", ssh_key_id];
        self.row(self.request(Method::DELETE, &path)).await
    }

    pub async fn scripts(&self, account: &str, name: Option<&str>, page: PageRequest) -> Result<Page<UserScript>> {
        self.named_list(&["accounts", account, "scripts"], name, page).await
    }

    pub async fn create_script(&self, account: &str, name: &str, content: &str) -> Result<UserScript> {
        let body = NewUserScript { name: name.into(), content: content.into() };
        self.row(self.request(Method::POST, &["accounts", account, "scripts"]).json(&body)).await
    }

    pub async fn delete_script(&self, account: &str, user_script_id: &str) -> Result<UserScript> {
        let path = ["accounts", account, "scripts", user_script_id];
        self.row(self.request(Method::DELETE, &path)).await
    }

    // Web console users.

    /// The people who sign in to the web console for `account`.
    pub async fn console_users(&self, account: &str) -> Result<Vec<ConsoleUser>> {
        self.rows(self.request(Method::GET, &["accounts", account, "users"])).await
    }

    /// Creates a console user; without `password` the server generates one and returns it in
    /// [`ConsoleUser::password`], once.
    pub async fn create_console_user(&self, account: &str, login: &str, password: Option<&str>) -> Result<ConsoleUser> {
        let body = NewConsoleUser { login: login.into(), password: password.map(str::to_owned) };
        self.row(self.request(Method::POST, &["accounts", account, "users"]).json(&body)).await
    }

    // Hypervisor hosts and placement (docs/hosts.md).

    /// Every host, with its status (`new`, `alive`, `offline`), capacity and reservations.
    pub async fn hosts(&self) -> Result<Vec<Host>> {
        self.rows(self.request(Method::GET, &["hosts"])).await
    }

    pub async fn host(&self, name: &str) -> Result<Host> {
        self.row(self.request(Method::GET, &["hosts", name])).await
    }

    /// Adds a host to a zone; the answer holds its token, which is shown only this once.
    pub async fn add_host(&self, name: &str, zone: &str) -> Result<IssuedHost> {
        let body = NewHost { name: name.into(), zone: zone.into() };
        self.row(self.request(Method::POST, &["hosts"]).json(&body)).await
    }

    pub async fn enable_host(&self, name: &str) -> Result<Host> {
        self.row(self.request(Method::POST, &["hosts", name, "enable"])).await
    }

    /// No new instance is placed on the host.
    pub async fn disable_host(&self, name: &str) -> Result<Host> {
        self.row(self.request(Method::POST, &["hosts", name, "disable"])).await
    }

    /// No new instance is placed on the host, and its instances are to leave it.
    pub async fn drain_host(&self, name: &str) -> Result<Host> {
        self.row(self.request(Method::POST, &["hosts", name, "drain"])).await
    }

    /// Declares an offline host dead: its work fails, its instances become `error`, their
    /// reservations are released.
    pub async fn declare_host_dead(&self, name: &str) -> Result<DeadHost> {
        self.row(self.request(Method::POST, &["hosts", name, "declare-dead"])).await
    }

    /// Moves the host's stopped instances to other hosts of its zone (one operation each); the
    /// answer lists those moving and those left with the reason.
    pub async fn evacuate_host(&self, name: &str) -> Result<Evacuation> {
        self.row(self.request(Method::POST, &["hosts", name, "evacuate"])).await
    }

    /// Destroys a machine the host has that no placement names (one of its `strays`).
    pub async fn destroy_stray(&self, name: &str, instance_id: &str) -> Result<DestroyedStray> {
        self.row(self.request(Method::POST, &["hosts", name, "strays", instance_id, "destroy"])).await
    }

    /// Removes a host that holds no instance; its token stops working.
    pub async fn remove_host(&self, name: &str) -> Result<Host> {
        self.row(self.request(Method::DELETE, &["hosts", name])).await
    }

    /// Every placement, or those on one host.
    pub async fn placements(&self, host: Option<&str>) -> Result<Vec<Placement>> {
        self.rows(self.request(Method::GET, &["placements"]).query(&[("host", host)])).await
    }

    /// Places an existing instance on a host of its zone (idempotent per instance).
    pub async fn place(&self, instance_id: &str, capabilities: Option<Vec<String>>) -> Result<Placement> {
        let body = NewPlacement { instance_id: instance_id.into(), capabilities };
        self.row(self.request(Method::POST, &["placements"]).json(&body)).await
    }

    pub async fn placement(&self, instance_id: &str) -> Result<Placement> {
        self.row(self.request(Method::GET, &["placements", instance_id])).await
    }

    /// Releases an instance's reservation.
    pub async fn release(&self, instance_id: &str) -> Result<Placement> {
        self.row(self.request(Method::DELETE, &["placements", instance_id])).await
    }

    pub async fn overcommit(&self) -> Result<Overcommit> {
        self.row(self.request(Method::GET, &["placements", "overcommit"])).await
    }

    /// Replaces each ratio set in `update`.
    pub async fn set_overcommit(&self, update: &OvercommitUpdate) -> Result<Overcommit> {
        self.row(self.request(Method::PUT, &["placements", "overcommit"]).json(update)).await
    }

    // Clock (settable with the simulated driver only).

    /// The QEMU driver's real networks (`--network namespaces`): taps, addresses, rule counts.
    pub async fn networks(&self) -> Result<Vec<openwinv_wire::admin::NetworkInfo>> {
        self.rows(self.request(Method::GET, &["networks"])).await
    }

    pub async fn clock(&self) -> Result<ClockState> {
        self.row(self.request(Method::GET, &["clock"])).await
    }

    /// Sets the clock to an RFC 3339 instant such as `2026-12-01T00:00:00+09:00`.
    pub async fn set_clock(&self, now: &str) -> Result<ClockState> {
        let body = SetClock { now: now.into() };
        self.row(self.request(Method::PUT, &["clock"]).json(&body)).await
    }

    /// Moves the clock forward by a duration such as `90s`, `1h30m` or `PT2H`.
    pub async fn advance_clock(&self, duration: &str) -> Result<ClockState> {
        let body = AdvanceClock { duration: duration.into() };
        self.row(self.request(Method::POST, &["clock", "advance"]).json(&body)).await
    }

    // Fault injection and stepping (simulated driver only; other drivers answer 409).

    /// Adds a fault rule: matching steps of matching operations fail once, `count` times,
    /// every time (`sticky`) or at random, and unwind (`permanent`) or retry (`transient`).
    pub async fn add_fault(&self, fault: &NewFault) -> Result<Fault> {
        self.row(self.request(Method::POST, &["faults"]).json(fault)).await
    }

    /// The fault rules, oldest first.
    pub async fn faults(&self) -> Result<Vec<Fault>> {
        self.rows(self.request(Method::GET, &["faults"])).await
    }

    /// Removes one fault rule; an unknown id is `NOT_FOUND`.
    pub async fn clear_fault(&self, fault_id: &str) -> Result<Cleared> {
        self.row(self.request(Method::DELETE, &["faults", fault_id])).await
    }

    /// Removes every fault rule.
    pub async fn clear_faults(&self) -> Result<Cleared> {
        self.row(self.request(Method::DELETE, &["faults"])).await
    }

    /// Lets a running operation take one more step of simulated hypervisor work (what explicit
    /// mode waits for); an operation that is not running is `NOT_FOUND`.
    pub async fn sim_step(&self, operation_id: &str) -> Result<SimStep> {
        self.row(self.request(Method::POST, &["sim", "step", operation_id])).await
    }

    // The stand-in's controls for test suites (docs/standin.md).

    /// Puts the server back to its first-start state: the catalog, the `dev` account and its first
    /// key; with `keep_accounts`, every account and key as they are. Simulated driver only.
    pub async fn reset(&self, keep_accounts: bool) -> Result<ResetDone> {
        let body = ResetRequest { keep_accounts: Some(keep_accounts) };
        self.row(self.request(Method::POST, &["reset"]).json(&body)).await
    }

    /// Saves the whole state as `name`, replacing a snapshot of that name.
    pub async fn save_snapshot(&self, name: &str) -> Result<SnapshotInfo> {
        let body = NewSnapshot { name: name.into() };
        self.row(self.request(Method::POST, &["snapshots"]).json(&body)).await
    }

    /// The saved snapshots, by name.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        self.rows(self.request(Method::GET, &["snapshots"])).await
    }

    /// Puts the whole state back to a snapshot. Simulated driver only.
    pub async fn restore_snapshot(&self, name: &str) -> Result<SnapshotInfo> {
        self.row(self.request(Method::POST, &["snapshots", name, "restore"])).await
    }

    pub async fn delete_snapshot(&self, name: &str) -> Result<SnapshotInfo> {
        self.row(self.request(Method::DELETE, &["snapshots", name])).await
    }

    /// Loads a fixture document (TOML when `toml`, else JSON); all or nothing.
    pub async fn seed(&self, fixture: &str, toml: bool) -> Result<SeedDone> {
        let content_type = if toml { "application/toml" } else { "application/json" };
        let request = self
            .request(Method::POST, &["seed"])
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(fixture.to_owned());
        self.row(request).await
    }

    // Plumbing.

    /// An authenticated request for `/admin/v1/<segments…>`, segments unencoded.
    pub fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut path = vec!["admin", "v1"];
        path.extend_from_slice(segments);
        self.transport.request(method, self.transport.url_of(&path)).bearer_auth(&self.token)
    }

    /// Sends a request made by [`AdminClient::request`] and decodes the envelope.
    pub async fn execute<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<Envelope<T>> {
        self.transport.execute(request).await
    }

    /// Sends a request made by [`AdminClient::request`] and returns the success envelope as
    /// sent, fields the wire types do not model included. Failures are still typed errors.
    pub async fn execute_raw(&self, request: RequestBuilder) -> Result<Value> {
        Ok(self.transport.answer(request).await?.envelope)
    }

    async fn rows<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<Vec<T>> {
        Ok(self.execute(request).await?.result)
    }

    async fn row<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        first_row(self.execute(request).await?)
    }

    async fn named_list<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        name: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<T>> {
        let query = NameQuery { name, page_no: page.page_no, page_size: page.page_size };
        let env = self.execute(self.request(Method::GET, segments).query(&query)).await?;
        Ok(Page::from_envelope(env, page))
    }
}

/// A multipart part streaming `path`, with its length so the body has a Content-Length.
async fn file_part(form: Form, name: &'static str, path: &Path) -> Result<Form> {
    let unreadable = |e: std::io::Error| Error::Config(format!("cannot read {} ({name}): {e}", path.display()));
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let meta = file.metadata().await.map_err(unreadable)?;
    if !meta.is_file() {
        return Err(Error::Config(format!("{} ({name}) is not a file", path.display())));
    }
    let file_name = path.file_name().map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned());
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK));
    let part = Part::stream_with_length(body, meta.len()).file_name(file_name).mime_str("application/octet-stream")?;
    Ok(form.part(name, part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_bearer_token_and_encoded_names() {
        let c = AdminClient::new("http://127.0.0.1:9", " tok\n").unwrap();
        let r = c.request(Method::POST, &["accounts", "a b", "keys"]).build().unwrap();
        assert_eq!(r.url().path(), "/admin/v1/accounts/a%20b/keys");
        assert_eq!(r.headers()["authorization"], "Bearer tok");
    }

    #[test]
    fn an_empty_token_is_refused() {
        assert!(matches!(AdminClient::new("http://h", "  "), Err(Error::Config(_))));
    }
}
