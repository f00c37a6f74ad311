//! Operations (spec §12) and the simulated driver's operator controls [ext].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An asynchronous operation, as `GET /v1/operations/{operation_id}` answers it [ext].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    pub operation_id: String,
    /// What it does, e.g. `instance.create`.
    pub kind: String,
    /// The resource it acts on, e.g. `INSTANCE-…`.
    pub resource_id: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Why it failed; null unless `status` is `failed`.
    pub error: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created_at: String,
    /// `YYYY-MM-DD HH:MM:SS`; null while running.
    pub finished_at: Option<String>,
}

/// A fault rule of the simulated driver [ext].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Fault {
    /// `FAULT-…`.
    pub fault_id: String,
    /// An operation kind such as `instance.create`, or `*` for every kind.
    pub kind: String,
    /// A step name, or `*` for every step.
    pub step: String,
    /// `once`, `count`, `sticky` or `random`.
    pub mode: String,
    /// `once` and `count`: failures left; `random`: the probability in per mille; `sticky`: 0.
    pub remaining: i64,
    /// `permanent` (the operation unwinds) or `transient` (the step is retried).
    pub effect: String,
    /// Seed of `random` rules: the same seed fails the same steps of the same operations.
    pub seed: i64,
    /// How many times the rule has fired.
    pub hits: i64,
    pub created_at: String,
}

/// Body of `POST /admin/v1/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct NewFault {
    /// An operation kind such as `instance.create`, or `*`.
    pub kind: String,
    /// A step name of that kind, or `*`.
    pub step: String,
    /// `once`, `count`, `sticky` or `random`.
    pub mode: String,
    /// `count` only: how many times the rule fires (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// `random` only: the probability that a matching step fails, 0.001 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// `random` only: the seed (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// `permanent` (default) or `transient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

/// Answer of the fault deletes: how many rules were removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cleared {
    pub cleared: u64,
}

/// Answer of `POST /admin/v1/sim/step/{operation_id}`: the operation that was allowed one more
/// step of hypervisor work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SimStep {
    pub operation_id: String,
    pub kind: String,
    pub resource_id: String,
    /// `running`, or already `succeeded` / `failed` when the workers were quick.
    pub status: String,
    /// Granted steps the operation has not used yet, when this answer was made.
    pub permits: i64,
}
