//! Serialized instance lists and details, kept by the account's view version (migration 0025).
//!
//! An answer is kept under everything that shapes it: the account, its view version and the
//! epoch (read from the store before the answer is built: one small statement, shared by the
//! requests for one account that arrive while the previous one runs), the version of
//! the catalog this process holds (zone, flavor and image names come from it), the path and the
//! decoded query pairs in order. Any write to a row an instance view shows gives the account a
//! new version in the same transaction, whichever process made it, so a kept answer is never
//! served after such a change; a reset or a restore moves the epoch on. Old versions are never
//! asked for again and leave as the cache fills.
//!
//! Not kept: answers that differ between two reads of the same rows: those asking for the
//! console link (a new one-time token each time, bit 16384 of `fields`), any answer when machines
//! run on hosts (`host_status` depends on the clock) or on the QEMU driver (the SSH forward of
//! `ip` is this process's, not the store's), and anything but a 200.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use openwinv_store::ViewVersion;

use super::view::fields_mask;
use crate::AppState;
use crate::auth::Caller;
use crate::config::{Driver, Placement};
use crate::input::Query;

/// Bit of `fields` asking for the console link.
const VNC: u64 = 16384;

/// Bytes of kept answers at most (their bodies and keys), per process, unless
/// `OPENWINV_PAGE_CACHE_MB` sets another bound (0 turns the cache off: every read builds its
/// answer, as before the cache; `scripts/bench` compares the two).
pub const PAGE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PageKey {
    account_id: String,
    version: ViewVersion,
    catalog: i64,
    path: String,
    query: Vec<(String, String)>,
}

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<PageKey, Bytes> for Weigh {
    fn weight(&self, key: &PageKey, body: &Bytes) -> u64 {
        let query: usize = key.query.iter().map(|(k, v)| k.len() + v.len()).sum();
        (body.len() + key.account_id.len() + key.path.len() + query + 64) as u64
    }
}

/// The kept answers of one process, bounded by [`PAGE_CACHE_BYTES`] (`None` when turned off),
/// and the version reads under way.
pub struct PageCache(Option<quick_cache::sync::Cache<PageKey, Bytes, Weigh>>, VersionReads);

/// Shards of the one-statement-at-a-time rule of [`VersionReads`]: accounts that share a shard
/// only take turns.
const SENDERS: usize = 64;

/// Concurrent reads of one account's view version share one statement. A request joins the
/// batch that has not been sent yet (or opens one); a batch is sent once the account's previous
/// statement has answered, and closed to newcomers just before, so its statement starts after
/// every request in it arrived: each sees every write that finished before it came. Under load
/// (many requests for one account) a statement answers many requests; alone, a request sends its
/// own at once.
struct VersionReads {
    pending: std::sync::Mutex<std::collections::HashMap<String, Arc<Batch>>>,
    senders: Vec<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct Batch(tokio::sync::OnceCell<Option<ViewVersion>>);

impl Default for VersionReads {
    fn default() -> Self {
        VersionReads { pending: Default::default(), senders: (0..SENDERS).map(|_| Default::default()).collect() }
    }
}

impl VersionReads {
    /// The account's view version, read after this call began; `None` when the read failed.
    async fn read(&self, store: &openwinv_store::Store, account_id: &str) -> Option<ViewVersion> {
        let batch = {
            let mut pending = self.pending.lock().expect("pending version reads");
            pending.entry(account_id.to_owned()).or_default().clone()
        };
        let shard = {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(account_id) as usize
                % SENDERS
        };
        *batch
            .0
            .get_or_init(|| async {
                let _turn = self.senders[shard].lock().await;
                {
                    let mut pending = self.pending.lock().expect("pending version reads");
                    if pending.get(account_id).is_some_and(|b| Arc::ptr_eq(b, &batch)) {
                        pending.remove(account_id);
                    }
                }
                store.view_version(account_id).await.ok()
            })
            .await
    }
}

impl Default for PageCache {
    fn default() -> Self {
        let bytes = match std::env::var("OPENWINV_PAGE_CACHE_MB") {
            Ok(mb) => match mb.trim().parse::<u64>() {
                Ok(mb) => mb.saturating_mul(1024 * 1024),
                Err(_) => {
                    tracing::warn!("OPENWINV_PAGE_CACHE_MB={mb:?} is not a number of MiB; keeping the default");
                    PAGE_CACHE_BYTES
                }
            },
            Err(_) => PAGE_CACHE_BYTES,
        };
        PageCache(
            (bytes > 0).then(|| quick_cache::sync::Cache::with_weighter(16 * 1024, bytes, Weigh)),
            VersionReads::default(),
        )
    }
}

/// The key of the request's answer without the view version, or `None` when the answer is not
/// kept (see the module documentation).
fn unversioned_key(state: &AppState, req: &Request) -> Option<PageKey> {
    if state.config.driver != Driver::Sim || state.config.placement == Placement::Hosts {
        return None;
    }
    let caller = req.extensions().get::<Caller>()?.clone();
    let raw = req.uri().query().unwrap_or("");
    let pairs = crate::input::url_pairs(raw.as_bytes(), "query parameter").ok()?;
    let q = Query(pairs.iter().cloned().collect());
    let mask = fields_mask(&q).ok()?;
    if mask & VNC != 0 {
        return None;
    }
    // The pairs the handler reads: the last of each name (as `Query` keeps them), in name order.
    let mut query: Vec<(String, String)> = q.0.into_iter().collect();
    query.sort_unstable();
    Some(PageKey {
        account_id: caller.account_id.to_string(),
        version: ViewVersion { account: 0, epoch: 0 },
        catalog: state.catalog.version(),
        path: req.uri().path().to_owned(),
        query,
    })
}

/// Answers an instance list or detail from the kept answers when the account's view version
/// still matches, and keeps the 200 answers it had to build.
pub async fn cached(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(pages) = &state.pages.0 else { return next.run(req).await };
    let Some(mut key) = unversioned_key(&state, &req) else { return next.run(req).await };
    // Read before the answer is built: the rows it reads are at least this version's.
    // (A failed read answers as the uncached path does: that one reads the store too.)
    let Some(version) = state.pages.1.read(&state.store, &key.account_id).await else { return next.run(req).await };
    key.version = version;
    if let Some(body) = pages.get(&key) {
        return crate::api::kept_answer(body);
    }
    crate::api::run_and_keep(req, next, |bytes| pages.insert(key, bytes)).await
}
