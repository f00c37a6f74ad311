//! Instances (spec §7) and the operations that carry out their changes (spec §12).
//!
//! Every change but an edit is asynchronous: the server answers 202 with a receipt and names the
//! operation in `X-Operation-Id` ([`Accepted`]); [`Client::wait_for_operation`] follows it to
//! the end.

use std::future::Future;
use std::time::{Duration, Instant};

use openwinv_wire::firewalls::Reachability;
use openwinv_wire::instances::{ActionReceipt, CreateReceipt, Instance, RemoteConsole};
use openwinv_wire::operations::Operation;
use openwinv_wire::{ErrorCode, headers};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::json;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::pages::{MAX_PAGE_SIZE, Page, PageRequest, collect_pages};
use crate::query::{InstanceQuery, OperationQuery};
use crate::response::{first_of, first_row};
use crate::transport::Answer;

/// The `status` values of an operation (spec §12).
pub mod operation_status {
    pub const RUNNING: &str = "running";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
}

/// How long to wait after a 429 that came without `Retry-After`.
const RATE_LIMITED_PAUSE: Duration = Duration::from_secs(1);

/// The body of `POST /v1/instances`: zone, image and flavor are required, the rest optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewInstance {
    pub zone_id: String,
    pub image_id: String,
    pub flavor_id: String,
    /// 1-64 characters (default `instance-xxxxxx`); `-1` … `-N` is appended when `count` > 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 0-255 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 1-10 instances, created all or none (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// SSH keys of the account to install (Linux images only); sent comma-separated.
    #[serde(rename = "ssh_key_id", serialize_with = "comma_separated", skip_serializing_if = "Vec::is_empty")]
    pub ssh_key_ids: Vec<String>,
    /// A user script of the account to run on first boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_script_id: Option<String>,
    /// Whether to give each instance a public address (server default: yes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach_public_ip: Option<bool>,
}

impl NewInstance {
    /// One instance of `flavor_id` from `image_id` in `zone_id`, everything else by default.
    pub fn new(zone_id: impl Into<String>, image_id: impl Into<String>, flavor_id: impl Into<String>) -> NewInstance {
        NewInstance {
            zone_id: zone_id.into(),
            image_id: image_id.into(),
            flavor_id: flavor_id.into(),
            ..NewInstance::default()
        }
    }
}

fn comma_separated<S: Serializer>(ids: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ids.join(","))
}

/// Body of `PUT /v1/instances/{id}`.
#[derive(Serialize)]
struct InstanceEdit<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

/// An accepted asynchronous request (HTTP 202): the receipt, and the operations that carry it
/// out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accepted<T> {
    /// The receipt: the rows of a create, the one row of an action or a delete.
    pub rows: T,
    /// From `X-Operation-Id`: one per created instance in row order, or the one of the action.
    pub operation_ids: Vec<String>,
    /// True when the server replayed its answer to an earlier request with the same
    /// `Idempotency-Key` (`Idempotent-Replayed: true`) instead of running this one.
    pub replayed: bool,
}

impl<T> Accepted<T> {
    /// The first (for an action, the only) operation.
    pub fn operation_id(&self) -> Option<&str> {
        self.operation_ids.first().map(String::as_str)
    }

    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> Result<U>) -> Result<Accepted<U>> {
        Ok(Accepted { rows: f(self.rows)?, operation_ids: self.operation_ids, replayed: self.replayed })
    }
}

/// The ids of a comma-separated `X-Operation-Id`.
fn operation_ids(h: &HeaderMap) -> Vec<String> {
    h.get(headers::OPERATION_ID)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(str::trim).filter(|id| !id.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

fn replayed(h: &HeaderMap) -> bool {
    h.get(headers::IDEMPOTENT_REPLAYED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

pub(crate) fn accepted<T: DeserializeOwned>(answer: &Answer) -> Result<Accepted<Vec<T>>> {
    Ok(Accepted {
        rows: answer.typed::<Vec<T>>()?.result,
        operation_ids: operation_ids(&answer.headers),
        replayed: replayed(&answer.headers),
    })
}

impl Client {
    /// One page of the account's instances.
    pub async fn instances(&self, query: &InstanceQuery) -> Result<Page<Instance>> {
        let env = self.get("/v1/instances", query).await?;
        Ok(Page::from_envelope(env, PageRequest { page_no: query.page_no, page_size: query.page_size }))
    }

    /// Every instance matching `query`, fetched page by page (100 rows a page unless the query
    /// sets a size; its `page_no` is ignored).
    pub async fn all_instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>> {
        collect_pages(|page_no| {
            let query = InstanceQuery {
                page_no: Some(page_no),
                page_size: query.page_size.or(Some(MAX_PAGE_SIZE)),
                ..query.clone()
            };
            async move { self.instances(&query).await }
        })
        .await
    }

    /// One instance, with the fields of the `fields` mask (the server default when `None`); an
    /// unknown id is the API error `NOT_FOUND`.
    pub async fn instance(&self, instance_id: &str, fields: Option<u64>) -> Result<Instance> {
        let request = self.request_of(Method::GET, &["v1", "instances", instance_id]).query(&[("fields", fields)]);
        first_row(self.execute(request).await?)
    }

    /// Would a packet from `from` (an IPv4 address or an instance id of the account) reach the
    /// instance on `protocol` (`TCP`, `UDP` or `ICMP`) and `port` (`None` for ICMP)? [ext] The
    /// server answers from the same compiled rules the kernel enforces, with the deciding rule.
    pub async fn reachability(
        &self,
        instance_id: &str,
        from: &str,
        protocol: &str,
        port: Option<u16>,
    ) -> Result<Reachability> {
        let request = self
            .request_of(Method::GET, &["v1", "instances", instance_id, "reachability"])
            .query(&[("from", from), ("protocol", protocol)])
            .query(&[("port", port)]);
        first_row(self.execute(request).await?)
    }

    /// Creates 1-10 instances, all or none. The receipt rows carry each instance's login and
    /// password, which the server does not show again unless asked for with the
    /// `default_account` field bit.
    pub async fn create_instances(&self, new: &NewInstance) -> Result<Accepted<Vec<CreateReceipt>>> {
        let request = self.request(Method::POST, "/v1/instances").json(new);
        accepted(&self.answer(request).await?)
    }

    /// Renames an instance and/or changes its description (an empty one clears it); at least
    /// one must be given. Synchronous: the answer is the changed instance.
    pub async fn edit_instance(
        &self,
        instance_id: &str,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Instance> {
        let body = InstanceEdit { name, description };
        let request = self.request_of(Method::PUT, &["v1", "instances", instance_id]).json(&body);
        first_row(self.execute(request).await?)
    }

    /// Deletes an instance (receipt status `deleting`); its volumes are detached and kept.
    pub async fn delete_instance(&self, instance_id: &str) -> Result<Accepted<ActionReceipt>> {
        self.act(self.request_of(Method::DELETE, &["v1", "instances", instance_id])).await
    }

    /// Powers an `off` or `error` instance on.
    pub async fn start_instance(&self, instance_id: &str) -> Result<Accepted<ActionReceipt>> {
        self.action(instance_id, "start", None).await
    }

    /// Powers an active instance off (hard, as iwinv does).
    pub async fn shutdown_instance(&self, instance_id: &str) -> Result<Accepted<ActionReceipt>> {
        self.action(instance_id, "shutdown", None).await
    }

    /// Reboots an active instance, softly or hard.
    pub async fn reboot_instance(&self, instance_id: &str, hard: bool) -> Result<Accepted<ActionReceipt>> {
        let kind = if hard { "HARD" } else { "SOFT" };
        self.action(instance_id, "reboot", Some(json!({ "type": kind }))).await
    }

    /// Reinstalls an instance from `image_id` (its current image when `None`) with a new
    /// password, keeping its addresses and volumes.
    pub async fn rebuild_instance(&self, instance_id: &str, image_id: Option<&str>) -> Result<Accepted<ActionReceipt>> {
        let body = match image_id {
            Some(image_id) => json!({ "image_id": image_id }),
            None => json!({}),
        };
        self.action(instance_id, "rebuild", Some(body)).await
    }

    /// Moves an instance to another flavor; the disk may grow but never shrink.
    pub async fn resize_instance(&self, instance_id: &str, flavor_id: &str) -> Result<Accepted<ActionReceipt>> {
        let body = json!({ "flavor_id": flavor_id });
        self.action(instance_id, "resize", Some(body)).await
    }

    /// A one-time link to the console of an active instance, valid for a few minutes.
    pub async fn remote_console(&self, instance_id: &str) -> Result<RemoteConsole> {
        let path = ["v1", "instances", instance_id, "remote-console"];
        first_row(self.execute(self.request_of(Method::GET, &path)).await?)
    }

    /// A page of the account's operations [ext], newest first.
    pub async fn operations(&self, query: &OperationQuery) -> Result<Page<Operation>> {
        let env = self.get("/v1/operations", query).await?;
        Ok(Page::from_envelope(env, PageRequest { page_no: query.page_no, page_size: query.page_size }))
    }

    /// One operation of the account, by the id from an `X-Operation-Id` header.
    pub async fn operation(&self, operation_id: &str) -> Result<Operation> {
        let request = self.request_of(Method::GET, &["v1", "operations", operation_id]);
        first_row(self.execute(request).await?)
    }

    /// Polls an operation every `interval` until it is no longer `running`, and returns it as it
    /// ended (`succeeded` or `failed`, with the reason in `error`). A failed operation is not an
    /// `Err`; giving up after `timeout` (the last poll is at that deadline) is
    /// [`Error::Timeout`]. Polls slow down when the access key's rate limit runs low (from the
    /// `RateLimit-*` headers), so that waiting leaves requests for what comes after, and a 429
    /// answer pauses them for its `Retry-After`.
    pub async fn wait_for_operation(
        &self,
        operation_id: &str,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Operation> {
        let ids = [operation_id.to_owned()];
        let mut ended = self.watch_operations(&ids, interval, timeout, |_| {}).await?;
        Ok(ended.remove(0))
    }

    /// [`Client::wait_for_operation`] for several operations: one request every `interval`,
    /// taking the unfinished operations in turn, and `on_poll` called with every answer (for a
    /// progress display). Returns the operations as they ended, in the order of `ids`.
    pub async fn watch_operations(
        &self,
        ids: &[String],
        interval: Duration,
        timeout: Duration,
        on_poll: impl FnMut(&Operation),
    ) -> Result<Vec<Operation>> {
        let poll = |id: String| async move {
            let request = self.request_of(Method::GET, &["v1", "operations", &id]);
            let answer = self.answer(request).await?;
            let op = first_row(answer.typed::<Vec<Operation>>()?)?;
            Ok((op, pace(&answer.headers, interval)))
        };
        watch(ids, timeout, poll, on_poll).await
    }

    async fn action(
        &self,
        instance_id: &str,
        action: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Accepted<ActionReceipt>> {
        let mut request = self.request_of(Method::POST, &["v1", "instances", instance_id, action]);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.act(request).await
    }

    async fn act(&self, request: RequestBuilder) -> Result<Accepted<ActionReceipt>> {
        let answer = self.answer(request).await?;
        accepted::<ActionReceipt>(&answer)?.map(first_of)
    }
}

/// The pause after a poll: `interval`, or longer when the access key's rate limit runs low, so
/// that waiting never uses up the requests the caller needs afterwards. With less than a quarter
/// of the limit left, polls come at half the rate the limit refills.
fn pace(h: &HeaderMap, interval: Duration) -> Duration {
    let number = |name: &str| -> Option<u64> { h.get(name)?.to_str().ok()?.trim().parse().ok() };
    let (Some(limit), Some(remaining), Some(reset)) =
        (number(headers::RATELIMIT_LIMIT), number(headers::RATELIMIT_REMAINING), number(headers::RATELIMIT_RESET))
    else {
        return interval;
    };
    if remaining.saturating_mul(4) >= limit {
        return interval;
    }
    // `reset` seconds refill the `limit - remaining` requests used.
    let refill_one = Duration::from_secs_f64(reset as f64 / (limit - remaining) as f64);
    interval.max(refill_one * 2)
}

/// The polling loop of [`Client::watch_operations`], over any `poll` function, which answers
/// the operation and the pause to take before the next poll.
async fn watch<F, Fut>(
    ids: &[String],
    timeout: Duration,
    mut poll: F,
    mut on_poll: impl FnMut(&Operation),
) -> Result<Vec<Operation>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Operation, Duration)>>,
{
    let started = Instant::now();
    let mut ended: Vec<Option<Operation>> = vec![None; ids.len()];
    let mut turn = 0;
    loop {
        let unfinished = (0..ids.len()).map(|k| (turn + k) % ids.len()).find(|&i| ended[i].is_none());
        let Some(i) = unfinished else {
            return Ok(ended.into_iter().flatten().collect());
        };
        turn = i + 1;
        let pause = match poll(ids[i].clone()).await {
            Ok((op, pause)) => {
                on_poll(&op);
                if op.status != operation_status::RUNNING {
                    ended[i] = Some(op);
                    if ended.iter().all(Option::is_some) {
                        continue;
                    }
                }
                pause
            }
            Err(Error::Api { status: 429, code: Some(ErrorCode::LimitExceeded), retry_after, .. }) => {
                retry_after.map_or(RATE_LIMITED_PAUSE, Duration::from_secs)
            }
            Err(e) => return Err(e),
        };
        // The last poll is at the deadline at the latest.
        let waited = started.elapsed();
        if waited >= timeout {
            let first_unfinished = ended.iter().position(Option::is_none).unwrap_or(i);
            return Err(Error::Timeout { operation_id: ids[first_unfinished].clone(), waited });
        }
        tokio::time::sleep(pause.min(timeout - waited)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    fn op(id: &str, status: &str) -> Operation {
        Operation {
            operation_id: id.into(),
            kind: "instance.start".into(),
            resource_id: "INSTANCE-1".into(),
            status: status.into(),
            error: (status == operation_status::FAILED).then(|| "no capacity".into()),
            created_at: "2026-01-01 00:00:00".into(),
            finished_at: None,
        }
    }

    #[test]
    fn new_instance_bodies_leave_unset_fields_out() {
        let new = NewInstance::new("KR1-Z01", "IMG-1", "ss1.c1m1");
        assert_eq!(
            serde_json::to_value(&new).unwrap(),
            json!({"zone_id": "KR1-Z01", "image_id": "IMG-1", "flavor_id": "ss1.c1m1"})
        );
        let new = NewInstance {
            name: Some("web".into()),
            count: Some(3),
            ssh_key_ids: vec!["SSHKEY-a".into(), "SSHKEY-b".into()],
            attach_public_ip: Some(false),
            ..new
        };
        assert_eq!(
            serde_json::to_value(&new).unwrap(),
            json!({"zone_id": "KR1-Z01", "image_id": "IMG-1", "flavor_id": "ss1.c1m1",
                   "name": "web", "count": 3, "ssh_key_id": "SSHKEY-a,SSHKEY-b",
                   "attach_public_ip": false})
        );
        let edit = InstanceEdit { name: None, description: Some("") };
        assert_eq!(serde_json::to_value(&edit).unwrap(), json!({"description": ""}));
    }

    #[test]
    fn operation_headers_are_read() {
        let mut h = HeaderMap::new();
        assert!(operation_ids(&h).is_empty());
        assert!(!replayed(&h));
        h.insert(headers::OPERATION_ID, "OP-1, OP-2,,OP-3".parse().unwrap());
        h.insert(headers::IDEMPOTENT_REPLAYED, "true".parse().unwrap());
        assert_eq!(operation_ids(&h), ["OP-1", "OP-2", "OP-3"]);
        assert!(replayed(&h));
    }

    #[test]
    fn accepted_keeps_the_operations() {
        let answer = Answer {
            status: 202,
            headers: {
                let mut h = HeaderMap::new();
                h.insert(headers::OPERATION_ID, "OP-9".parse().unwrap());
                h
            },
            envelope: json!({"code": "0x00", "error_code": "SUCCESS", "message": "",
                "result": [{"instance_id": "INSTANCE-1", "status": "work"}], "count": 1}),
        };
        let a = accepted::<ActionReceipt>(&answer).unwrap().map(first_of).unwrap();
        assert_eq!(a.rows.status, "work");
        assert_eq!(a.operation_id(), Some("OP-9"));
        assert!(!a.replayed);
    }

    #[test]
    fn polls_slow_down_when_the_rate_limit_runs_low() {
        let interval = Duration::from_millis(200);
        let headers = |limit: &str, remaining: &str, reset: &str| {
            let mut h = HeaderMap::new();
            h.insert(headers::RATELIMIT_LIMIT, limit.parse().unwrap());
            h.insert(headers::RATELIMIT_REMAINING, remaining.parse().unwrap());
            h.insert(headers::RATELIMIT_RESET, reset.parse().unwrap());
            h
        };
        assert_eq!(pace(&HeaderMap::new(), interval), interval, "no limit");
        assert_eq!(pace(&headers("60", "15", "45"), interval), interval);
        // 60 a minute, 10 left: one request refills per second, so poll every 2 s.
        assert_eq!(pace(&headers("60", "10", "50"), interval), Duration::from_secs(2));
        assert_eq!(pace(&headers("60", "0", "60"), interval), Duration::from_secs(2));
        // A generous limit never slows below the interval.
        assert_eq!(pace(&headers("6000", "1000", "50"), interval), interval);
        assert_eq!(pace(&headers("6000", "10", "1"), interval), interval);
    }

    #[tokio::test]
    async fn watching_polls_in_turn_until_every_operation_ends() {
        // OP-a ends on its second poll, OP-b on its third, failed.
        let script =
            HashMap::from([("OP-a", vec!["running", "succeeded"]), ("OP-b", vec!["running", "running", "failed"])]);
        let polls = RefCell::new(Vec::<String>::new());
        let mut seen = 0;
        let ids = ["OP-a".to_owned(), "OP-b".to_owned()];
        let ended = watch(
            &ids,
            Duration::from_secs(10),
            |id| {
                let n = polls.borrow().iter().filter(|p| **p == id).count();
                polls.borrow_mut().push(id.clone());
                let status = script[id.as_str()][n];
                async move { Ok((op(&id, status), Duration::from_millis(1))) }
            },
            |_| seen += 1,
        )
        .await
        .unwrap();
        assert_eq!(*polls.borrow(), ["OP-a", "OP-b", "OP-a", "OP-b", "OP-b"]);
        assert_eq!(seen, 5);
        assert_eq!(ended[0].status, "succeeded");
        assert_eq!(ended[1].status, "failed");
        assert_eq!(ended[1].error.as_deref(), Some("no capacity"));
        let none = watch(&[], Duration::ZERO, |id| async move { Ok((op(&id, "running"), Duration::ZERO)) }, |_| {})
            .await
            .unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn watching_gives_up_after_the_timeout_and_stops_on_errors() {
        let ids = ["OP-slow".to_owned()];
        let err = watch(
            &ids,
            Duration::from_millis(20),
            |id| async move { Ok((op(&id, "running"), Duration::from_millis(5))) },
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(&err, Error::Timeout { operation_id, .. } if operation_id == "OP-slow"), "{err:?}");
        let err = watch(
            &ids,
            Duration::from_secs(10),
            |_| async {
                Err(Error::Api {
                    status: 404,
                    code: Some(ErrorCode::NotFound),
                    error_code: "NOT_FOUND".into(),
                    message: "gone".into(),
                    retry_after: None,
                })
            },
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotFound));
    }

    #[tokio::test]
    async fn a_rate_limited_poll_waits_and_tries_again() {
        let ids = ["OP-1".to_owned()];
        let calls = RefCell::new(0);
        let ended = watch(
            &ids,
            Duration::from_secs(10),
            |id| {
                *calls.borrow_mut() += 1;
                let first = *calls.borrow() == 1;
                async move {
                    if first {
                        Err(Error::Api {
                            status: 429,
                            code: Some(ErrorCode::LimitExceeded),
                            error_code: "LIMIT_EXCEEDED".into(),
                            message: "slow down".into(),
                            retry_after: Some(0),
                        })
                    } else {
                        Ok((op(&id, "succeeded"), Duration::ZERO))
                    }
                }
            },
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!((ended.len(), *calls.borrow()), (1, 2));
        // A wait longer than the time left is cut to the deadline, where it gives up.
        let started = Instant::now();
        let err = watch(
            &ids,
            Duration::from_millis(50),
            |_| async {
                Err(Error::Api {
                    status: 429,
                    code: Some(ErrorCode::LimitExceeded),
                    error_code: "LIMIT_EXCEEDED".into(),
                    message: "slow down".into(),
                    retry_after: Some(30),
                })
            },
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
