//! `GET /v1/instances/{id}/reachability` [ext]: "can X reach this instance?".
//!
//! The answer comes from the pure evaluator of `openwinv-net` walking a model of the instance's
//! (account, zone) network built from the store: every machine involved gets the rule set the
//! firewall compiler makes for it, the same rules the QEMU driver loads into the kernel. So the
//! simulated driver answers as the kernel would (the packet tests hold the evaluator to the
//! kernel's verdicts).
//!
//! `from` is an IPv4 address or an instance id of the same account:
//! - an instance of the same zone sends from its tap with its private address to the private
//!   address (its outbound chain, then the target's inbound chain);
//! - an instance of another zone, or an outside address, comes in over the uplink to the
//!   target's public address (NAT), and only the target's inbound chain applies;
//! - a private address of the account's network that is a machine's is that machine; any other
//!   private address arriving from outside is spoofed and dropped, as the kernel does.
//!
//! The answer is about addresses and firewalls; it does not look at whether the machines run.

use std::net::Ipv4Addr;

use axum::extract::State;
use axum::{Extension, Json};
use openwinv_driver::firewall::Verdict;
use openwinv_net::eval::{self, ChainDecision, CtState, Direction, Gate, L4, Packet, Step};
use openwinv_net::{Mac, Machine, NetworkModel, Port, Subnet, tap_name};
use openwinv_store::{InstanceFilter, InstanceRecord, PageQuery};
use openwinv_wire::firewalls::Reachability;
use openwinv_wire::{Envelope, ErrorCode};

use crate::AppState;
use crate::api::Reply;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::input::{Path, Query, enum_error};
use crate::sagas::addresses;
use crate::sagas::firewall::compiled_for;

const PROTOCOLS: &[&str] = &["TCP", "UDP", "ICMP"];

/// Where the probe starts, once `from` is resolved.
enum Source {
    /// A machine of the target's network.
    Machine(Box<InstanceRecord>),
    /// Outside the network (another zone, the Internet), with this source address.
    Outside(Ipv4Addr),
}

fn ip_of(r: &InstanceRecord, public: bool) -> Option<Ipv4Addr> {
    let v = if public { r.public_ip.as_deref() } else { r.private_ip.as_deref() };
    v.and_then(|s| s.parse().ok())
}

async fn machine(state: &AppState, r: &InstanceRecord) -> ApiResult<Option<(String, Machine)>> {
    let Some(ip) = ip_of(r, false) else { return Ok(None) };
    let tap = tap_name(&r.instance_id);
    let rules = compiled_for(&state.store, &r.instance_id).await?;
    let port = Port { tap: tap.clone(), mac: Mac::for_instance(&r.instance_id), ip, public_ip: ip_of(r, true) };
    Ok(Some((tap, Machine { port, rules })))
}

/// Would a packet from `from` reach the instance on `protocol`/`port`? [ext]
#[utoipa::path(get, path = "/v1/instances/{instance_id}/reachability", tag = "instances",
    params(("instance_id" = String, Path),
        ("from" = String, Query, description = "An IPv4 address, or an instance id of the same account."),
        ("protocol" = String, Query, description = "TCP, UDP or ICMP."),
        ("port" = Option<u16>, Query, minimum = 1, maximum = 65535, description = "The destination port, 1–65535; required for TCP and UDP, refused for ICMP.")),
    responses((status = 200, body = Envelope<Vec<Reachability>>),
        (status = 400, description = "A missing or malformed parameter", body = openwinv_wire::ErrorEnvelope),
        (status = 404, description = "The instance, or the `from` instance, is not the account's", body = openwinv_wire::ErrorEnvelope),
        (status = 409, description = "The instance has no address yet (DELETED_OR_WORKING_INSTANCE)", body = openwinv_wire::ErrorEnvelope)))]
pub async fn reachability(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Query,
) -> Reply<Reachability> {
    let from = q.str("from").map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| missing("from"))?.to_owned();
    let protocol = q.str("protocol").ok_or_else(|| missing("protocol"))?;
    let l4 = match protocol {
        "TCP" => L4::Tcp,
        "UDP" => L4::Udp,
        "ICMP" => L4::Icmp,
        other => return Err(enum_error("protocol", other, PROTOCOLS)),
    };
    let port = match (l4, q.str("port")) {
        (L4::Icmp, None) => None,
        (L4::Icmp, Some(_)) => {
            return Err(ApiError::param("The query parameter `port` is not used with ICMP; leave it out."));
        }
        (_, None) => return Err(missing("port")),
        (_, Some(v)) => match v.trim().parse::<u16>() {
            Ok(p) if p >= 1 => Some(p),
            _ => {
                return Err(ApiError::param(format!(
                    "The query parameter `port` must be an integer from 1 to 65535, not `{v}`."
                )));
            }
        },
    };

    let target = state
        .store
        .instance(&caller.account_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("The instance `{id}`")))?;
    let Some((target_tap, target_machine)) = machine(&state, &target).await? else {
        return Err(ApiError::new(
            ErrorCode::DeletedOrWorkingInstance,
            format!("The instance `{id}` has no private address yet; ask again once it is created."),
        ));
    };

    let source = resolve_from(&state, &caller.account_id, &target, &from).await?;

    let net = addresses::private_net();
    let subnet = Subnet::new(net.network(), net.prefix_len()).expect("valid constant");
    let mut model = NetworkModel::new(subnet, addresses::gateway(&net));
    let target_private = target_machine.port.ip;
    let target_public = target_machine.port.public_ip;
    model.machines.insert(target_tap.clone(), target_machine);
    let (pkt_from, to, source_ip) = match &source {
        Source::Machine(r) => {
            let Some((tap, m)) = machine(&state, r).await? else {
                return Err(ApiError::new(
                    ErrorCode::DeletedOrWorkingInstance,
                    format!("The instance `{from}` (query parameter `from`) has no private address yet."),
                ));
            };
            let p = eval::From::Tap { tap: tap.clone(), mac: m.port.mac, ip: m.port.ip };
            let ip = m.port.ip;
            model.machines.entry(tap).or_insert(m);
            (p, target_private, ip)
        }
        // From outside, the packet goes to the public address; without one, the private address
        // (which the uplink does not route in: `not_public`).
        Source::Outside(ip) => (eval::From::Uplink(*ip), target_public.unwrap_or(target_private), *ip),
    };
    let pkt = Packet { from: pkt_from, to, protocol: l4, port: port.unwrap_or(0), state: CtState::New };
    let d = eval::evaluate(&model, &pkt);

    let decided = d.decided_by();
    let (step, rules) = match decided.map(|c| &c.step) {
        None => (None, Vec::new()),
        Some(Step::Established) => (Some("established"), Vec::new()),
        Some(Step::Invalid) => (Some("invalid"), Vec::new()),
        Some(Step::Icmp(f)) => (Some("icmp"), f.clone()),
        Some(Step::Rule(r)) => (Some("rule"), r.clone()),
        Some(Step::Default) => (Some("default"), Vec::new()),
    };
    let reason = reason(&d.verdict, d.gate, decided, &target_tap, &rules);
    let answer = Reachability {
        instance_id: target.instance_id.to_string(),
        from,
        source_ip: Some(source_ip.to_string()),
        destination_ip: Some(to.to_string()),
        protocol: protocol.to_owned(),
        port,
        verdict: verdict_name(d.verdict).to_owned(),
        gate: gate_name(d.gate).to_owned(),
        direction: decided.map(|c| match c.direction {
            Direction::In => "in".to_owned(),
            Direction::Out => "out".to_owned(),
        }),
        step: step.map(str::to_owned),
        rules,
        reason,
    };
    Ok(Json(Envelope::rows(vec![answer])))
}

fn missing(name: &str) -> ApiError {
    ApiError::new(ErrorCode::RequiredGetParamMissing, format!("The query parameter `{name}` is required."))
}

async fn resolve_from(state: &AppState, account_id: &str, target: &InstanceRecord, from: &str) -> ApiResult<Source> {
    if let Ok(ip) = from.parse::<Ipv4Addr>() {
        if addresses::private_net().contains(&ip) {
            // A private address is a machine of the target's network, or a spoofed source.
            let n = i64::from(u32::from(ip));
            let filter = InstanceFilter {
                zone_id: Some(target.zone_id.clone()),
                ip_ranges: Some(vec![(n, n)]),
                ..InstanceFilter::default()
            };
            let (rows, _) = state.store.list_instances(account_id, &filter, PageQuery::new(10, 0)).await?;
            if let Some(r) = rows.into_iter().find(|r| ip_of(r, false) == Some(ip)) {
                return Ok(Source::Machine(Box::new(r)));
            }
        }
        return Ok(Source::Outside(ip));
    }
    if from.contains(':') && from.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(ApiError::new(
            ErrorCode::Ipv6NotSupported,
            format!(
                "The query parameter `from` must be an IPv4 address or an instance id, not the IPv6 address `{from}`."
            ),
        ));
    }
    let Some(r) = state.store.instance(account_id, from).await? else {
        return Err(ApiError::not_found(format!(
            "The query parameter `from` is neither an IPv4 address nor an instance of yours: `{from}`"
        )));
    };
    if r.zone_id == target.zone_id {
        return Ok(Source::Machine(Box::new(r)));
    }
    // Another zone is another network: it reaches this one over the uplink, from its public
    // address.
    match ip_of(&r, true) {
        Some(ip) => Ok(Source::Outside(ip)),
        None => Err(ApiError::new(
            ErrorCode::UnavailableCombination,
            format!(
                "The instance `{from}` (query parameter `from`) is in another zone and has no public address, \
                 so it cannot send to this instance at all."
            ),
        )),
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Accept => "accept",
        Verdict::Drop => "drop",
    }
}

fn gate_name(g: Gate) -> &'static str {
    match g {
        Gate::Chains => "chains",
        Gate::Dhcp => "dhcp",
        Gate::UnknownPort => "unknown_port",
        Gate::SpoofedMac => "spoofed_mac",
        Gate::SpoofedIp => "spoofed_ip",
        Gate::SpoofedFromOutside => "spoofed_from_outside",
        Gate::NoSuchMachine => "no_such_machine",
        Gate::NotPublic => "not_public",
    }
}

fn reason(
    verdict: &Verdict,
    gate: Gate,
    decided: Option<&ChainDecision>,
    target_tap: &str,
    rules: &[String],
) -> String {
    let verb = verdict_name(*verdict);
    match gate {
        Gate::NotPublic => {
            "The instance has no public address, so nothing outside its private network reaches it.".into()
        }
        Gate::SpoofedFromOutside => {
            "A private address of this network that is no machine's can only be a spoofed source; it is dropped.".into()
        }
        Gate::NoSuchMachine => "No machine of this network has the destination address.".into(),
        Gate::UnknownPort | Gate::SpoofedMac | Gate::SpoofedIp | Gate::Dhcp => {
            format!("Decided before any firewall: {verb}.")
        }
        Gate::Chains => match decided {
            None => "Nothing filters this path: accept.".into(),
            Some(c) => {
                let whose = if c.tap == target_tap { "the instance's inbound" } else { "the sender's outbound" };
                let whose = if c.direction == Direction::Out && c.tap == target_tap {
                    "the instance's outbound"
                } else {
                    whose
                };
                match &c.step {
                    Step::Rule(_) => format!("Accepted by {whose} chain, rule {}.", rules.join(", ")),
                    Step::Icmp(_) => format!("ICMP accepted by {whose} chain (icmp: Y on {}).", rules.join(", ")),
                    Step::Established => format!("A reply to an allowed connection: accepted by {whose} chain."),
                    Step::Invalid => format!("An invalid packet: dropped by {whose} chain."),
                    Step::Default if c.verdict == Verdict::Accept => {
                        format!("No firewall restricts {whose} chain here: accept.")
                    }
                    Step::Default => format!("No rule of {whose} chain allows it: drop."),
                }
            }
        },
    }
}
