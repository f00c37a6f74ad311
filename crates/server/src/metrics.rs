//! Prometheus metrics: requests by route and status, latency, authentication failures by reason.

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use openwinv_wire::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

/// Real networks (`--network namespaces`): firewall rule applies (one nft transaction each) and
/// reconcile passes.
#[derive(Clone)]
pub struct NetMetrics {
    applies: Family<OutcomeLabels, Counter>,
    latency: Histogram,
    reconciles: Counter,
    drift_repairs: Counter,
}

impl openwinv_qemu::networks::NetObserver for NetMetrics {
    fn rule_apply(&self, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "failed" };
        self.applies.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
        self.latency.observe(seconds);
    }

    fn reconcile(&self, compared: usize, repaired: usize) {
        self.reconciles.inc_by(compared as u64);
        self.drift_repairs.inc_by(repaired as u64);
    }
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub net: NetMetrics,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    auth_failures: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("openwinv");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method, route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        registry.register("auth_failures", "Rejected signed or operator requests by error_code", auth_failures.clone());
        let net = NetMetrics {
            applies: Family::default(),
            latency: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            reconciles: Counter::default(),
            drift_repairs: Counter::default(),
        };
        registry.register(
            "firewall_rule_applies",
            "Firewall rule sets applied to the kernel, by outcome",
            net.applies.clone(),
        );
        registry.register(
            "firewall_rule_apply_duration_seconds",
            "Time of one firewall apply (one nft transaction and the connections it cuts)",
            net.latency.clone(),
        );
        registry.register(
            "network_reconciles",
            "Networks a reconcile pass compared with the ruleset last applied",
            net.reconciles.clone(),
        );
        registry.register(
            "network_drift_repairs",
            "Networks whose live ruleset had drifted from the one applied, rewritten by a reconcile pass",
            net.drift_repairs.clone(),
        );
        Metrics { registry: Mutex::new(registry), net, requests, latency, auth_failures }
    }
}

impl Metrics {
    pub fn auth_failure(&self, code: ErrorCode) {
        self.auth_failures.get_or_create(&ReasonLabels { reason: code.as_str().into() }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry.lock().expect("registry")).expect("writing to a String cannot fail");
        out
    }
}

/// Records every request; the route is the matched pattern, never the raw path (bounded labels).
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.requests.get_or_create(&RequestLabels { method, route: route.clone(), status: resp.status().as_u16() }).inc();
    m.latency.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    resp
}
