//! First start and every start: the data directory, the encryption key, the operator token, the
//! store, and, on an empty store only, the catalog, the `dev` account and its access key.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use std::sync::Arc;

use anyhow::Context;
use openwinv_driver::{ComputeDriver, ConsoleBroker, Pacing, SimDriver};
use openwinv_engine::{Engine, EngineConfig, WorkerIdentity};
use openwinv_store::crypto::Sealer;
use openwinv_store::{AccountRecord, Bootstrap, NewKeyRecord, Store, ids};

use crate::auth::Authenticator;
use crate::catalog::{CatalogCache, CatalogFile, DEFAULT_CATALOG};
use crate::clock::Clock;
use crate::config::{Config, DEFAULT_RATE_LIMIT, Driver, SimMode, TlsConfig};
use crate::metrics::Metrics;
use crate::tls;
use crate::{AppState, Inner};

pub const BOOTSTRAP_ACCOUNT: &str = "dev";

/// Prepares everything the server needs and returns its state.
pub async fn start(config: Config, local: SocketAddr) -> anyhow::Result<AppState> {
    let data = config.data_dir.clone();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data)
        .with_context(|| format!("cannot create the data directory {}", data.display()))?;

    let sealer = match &config.encryption_key {
        Some(hex) => Sealer::from_hex(hex).context("encryption_key")?,
        None => Sealer::from_hex(&read_or_create_secret(&data.join("encryption-key"), Sealer::generate_hex)?)
            .context("the encryption-key file in the data directory")?,
    };
    let admin_token = match &config.admin_token {
        Some(t) => t.clone(),
        None => read_or_create_secret(&data.join("admin-token"), || ids::random_base62(40))?,
    };

    let store = Store::open(&config.database_url).await.context("cannot open the database")?;
    let clock = Clock::new(config.driver == Driver::Sim);
    clock.load(&store).await?;

    let catalog_text = match &config.catalog_file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => DEFAULT_CATALOG.to_owned(),
    };
    let catalog = CatalogFile::parse(&catalog_text).map_err(anyhow::Error::msg)?;
    let (access_key, secret_key) = config.bootstrap_key.clone().unwrap_or_else(|| (new_access_key(), new_secret_key()));
    let now = clock.unix();
    let account = AccountRecord {
        account_id: ids::AccountId::generate(),
        name: BOOTSTRAP_ACCOUNT.into(),
        enabled: 1,
        created_at: now,
        quota_instances: None,
        quota_vcpu: None,
        quota_storage_gb: None,
    };
    let sealed = sealer.seal(&secret_key);
    let account_id = account.account_id.clone();
    let entries = catalog.to_entries();
    let seeded = store
        .bootstrap(
            Bootstrap {
                key: NewKeyRecord {
                    access_key: &access_key,
                    account_id: &account_id,
                    secret_sealed: &sealed,
                    rate_limit: i64::from(config.bootstrap_rate_limit),
                    allow: &[],
                    created_at: now,
                },
                account,
                catalog: &entries,
            },
            now,
        )
        .await?;
    if seeded {
        let host = if local.ip().is_unspecified() { "127.0.0.1".to_owned() } else { local.ip().to_string() };
        // HTTPS only when it replaces HTTP on this address; its clients also need the CA.
        let https = matches!(&config.tls, Some(TlsConfig { listen: None, .. }));
        let endpoint = format!("{}://{host}:{}", if https { "https" } else { "http" }, local.port());
        let ca_line = if https {
            format!("ca_file = \"{}\"\n", std::path::absolute(tls::ca_cert_path(&data))?.display())
        } else {
            String::new()
        };
        // The web console's first user, `dev`, with a generated password (comment lines in the
        // credentials file: the CLI reads only its keys).
        let console_password = crate::web::session::new_password();
        let user = openwinv_store::UserRecord {
            user_id: ids::new_id("USER"),
            account_id: account_id.clone(),
            login: BOOTSTRAP_ACCOUNT.into(),
            password_hash: crate::web::session::hash_password(console_password.clone()).await?,
            created_at: now,
        };
        store.insert_user(&user).await.context("creating the console user `dev`")?;
        let creds = data.join("credentials");
        write_private(
            &creds,
            &format!(
                "# openwinv client credentials for account `{BOOTSTRAP_ACCOUNT}`\n\
                 endpoint = \"{endpoint}\"\naccess_key = \"{access_key}\"\nsecret_key = \"{secret_key}\"\n{ca_line}\
                 # web console: {endpoint}/  login: {BOOTSTRAP_ACCOUNT}  password: {console_password}\n"
            ),
        )?;
        println!(
            "First start: created account `{BOOTSTRAP_ACCOUNT}` with an access key (shown once, saved to {}):",
            creds.display()
        );
        println!("  IWINV_ENDPOINT={endpoint}");
        println!("  IWINV_ACCESS_KEY={access_key}");
        println!("  IWINV_SECRET_KEY={secret_key}");
        if https {
            println!("  IWINV_CA_FILE={}", tls::ca_cert_path(&data).display());
        }
        if config.bootstrap_rate_limit == 0 {
            println!(
                "This key has no rate limit; `openwinv admin keys update {access_key} --rate-limit {DEFAULT_RATE_LIMIT}` \
                 gives it iwinv's."
            );
        }
        println!(
            "Web console: {endpoint}/  (login `{BOOTSTRAP_ACCOUNT}`, password {console_password}; also in {})",
            creds.display()
        );
        println!("Operator token: {}", data.join("admin-token").display());
        tracing::info!(account = BOOTSTRAP_ACCOUNT, "bootstrapped an empty store");
    }

    let catalog = Arc::new(CatalogCache::load(&store).await?);
    let images = crate::images::ImageStore::new(&data);
    let pacing = match config.sim_mode {
        SimMode::Timed if config.sim_delay.is_zero() => Pacing::Immediate,
        SimMode::Timed => Pacing::Timed(config.sim_delay),
        SimMode::Explicit => Pacing::Explicit,
    };
    let metrics = Metrics::default();
    let mut networks: Option<Arc<openwinv_qemu::Networks>> = None;
    // One driver behind both ports: the contract saga steps call, the console broker handlers ask.
    let (driver, consoles): (Arc<dyn ComputeDriver>, Arc<dyn ConsoleBroker>) = match config.driver {
        Driver::Sim => {
            let sim = Arc::new(SimDriver::new(pacing));
            (sim.clone(), sim)
        }
        Driver::Qemu => {
            let qemu = openwinv_qemu::QemuDriver::new(
                data.clone(),
                config.accel,
                std::env::var("OPENWINV_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()),
                std::env::var("OPENWINV_QEMU_IMG").unwrap_or_else(|_| "qemu-img".into()),
            );
            let qemu = match config.network {
                crate::config::NetworkMode::User => qemu,
                crate::config::NetworkMode::Namespaces => {
                    let host = openwinv_net::Host {
                        // Tests play the host in a namespace of their own; production uses its own.
                        netns: std::env::var("OPENWINV_NETWORK_HOST_NETNS").ok().filter(|n| !n.is_empty()),
                        prefix: std::env::var("OPENWINV_NETWORK_PREFIX").unwrap_or_else(|_| "owv-".into()),
                        uplink: config.uplink.clone(),
                        // dnsmasq reads its hosts file after dropping to `nobody`: outside the
                        // private data directory, in a world-traversable one (MACs and addresses only).
                        run_dir: std::env::var_os("OPENWINV_NETWORK_RUN_DIR")
                            .map(std::path::PathBuf::from)
                            .unwrap_or_else(|| "/run/openwinv/networks".into()),
                    };
                    let nets = Arc::new(
                        openwinv_qemu::Networks::new(host, data.join("networks.json"))
                            .with_observer(Arc::new(metrics.net.clone())),
                    );
                    nets.prepare().await.map_err(|e| anyhow::anyhow!("--network namespaces cannot start: {e}"))?;
                    nets.clone().spawn_reconcile();
                    networks = Some(nets.clone());
                    qemu.with_networks(nets)
                }
            };
            let accel = qemu.preflight().await.map_err(|e| anyhow::anyhow!("the QEMU driver cannot start: {e}"))?;
            tracing::info!(?accel, "QEMU driver ready");
            let qemu = Arc::new(qemu);
            (qemu.clone(), qemu)
        }
    };
    // Hosts mode: every driver call on an instance becomes work for its host's agent; the
    // process's own driver keeps what has no host (a volume's storage on its own) and consoles.
    let hosts_mode = config.placement == crate::config::Placement::Hosts;
    let driver: Arc<dyn ComputeDriver> = if hosts_mode {
        spawn_work_pruning(store.clone());
        Arc::new(crate::remote_driver::RemoteDriver::new(store.clone(), clock.clone(), driver, images.disks_dir()))
    } else {
        driver
    };
    let engine_config = EngineConfig {
        workers: config.workers,
        repeat_steps: config.repeat_steps,
        faults: config.driver == Driver::Sim,
        lease: config.lease,
        ..EngineConfig::default()
    };
    // The data directory remembers this run's worker id, so the next run takes back its leases at once.
    let identity = WorkerIdentity::in_data_dir(&data)
        .with_context(|| format!("the {} file in the data directory", openwinv_engine::worker::WORKER_ID_FILE))?;
    let mut engine = Engine::with_identity(store.clone(), clock.clone(), driver.pacing(), engine_config, identity);
    let deps = Arc::new(crate::sagas::Deps {
        store: store.clone(),
        driver: driver.clone(),
        catalog: catalog.clone(),
        images: images.clone(),
        sealer: sealer.clone(),
        clock: clock.clone(),
        hosts_mode,
    });
    for saga in crate::sagas::all(deps) {
        engine.register(saga);
    }
    Ok(AppState::new(Inner {
        engine: Arc::new(engine),
        driver,
        consoles,
        auth: Authenticator::new(clock.clone()),
        config,
        store,
        sealer,
        clock,
        catalog,
        images,
        metrics,
        networks,
        admin_token,
        live_bills: Default::default(),
        pages: Default::default(),
    }))
}

/// Hosts mode: answered work items older than a day are removed every hour (their operations
/// have long moved on; a step retried later still finds the agent's own record).
fn spawn_work_pruning(store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let day_ago = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64 - 86_400_000);
            if let Err(e) = store.prune_work(day_ago).await {
                tracing::warn!(error = %e, "could not prune answered host work");
            }
        }
    });
}

/// A new access key: 20 upper-case letters and digits.
pub fn new_access_key() -> String {
    ids::random_base62(40)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .take(20)
        .collect()
}

/// A new secret key: 40 base62 characters.
pub fn new_secret_key() -> String {
    ids::random_base62(40)
}

fn read_or_create_secret(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = make();
            write_private(path, &format!("{value}\n"))?;
            Ok(value)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a file readable only by its owner (0600), replacing any old one.
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
