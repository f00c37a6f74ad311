//! What an operation kind must provide: ordered, idempotent steps, each with an undo.
//!
//! An operation kind is written as an [`Operation`]: a serde `Params` type (what the request
//! writes into the operation row and every step reads) and a `Step` enum (its steps, in order).
//! `run` and `undo` match the step enum, so the compiler checks that every step has both. The
//! engine drives any kind through the object-safe [`Saga`], which [`Typed`] derives from an
//! [`Operation`].
//!
//! What a row holds and how old rows carry over: the row's `params` column is the JSON of
//! `Params` (its serde names are the row's keys), written once by the request and never changed
//! by steps; progress is the index of the next step in `Step::ALL`, so a kind's steps keep their
//! order. A step's name is its serde name (snake case), used by fault rules and in errors.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One step of a saga.
#[derive(Debug, Clone, Copy)]
pub struct StepDef {
    /// Stable name, used by fault injection and shown in operation errors.
    pub name: &'static str,
    /// Hypervisor work: the simulated driver delays it (timed mode) or holds it until the operator
    /// steps it (explicit mode).
    pub paced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Worth retrying (with backoff, a bounded number of times when running forward).
    #[error("{0}")]
    Transient(String),
    /// The operation cannot complete: undo what was done.
    #[error("{0}")]
    Permanent(String),
}

impl From<openwinv_store::StoreError> for StepError {
    fn from(e: openwinv_store::StoreError) -> StepError {
        StepError::Transient(format!("store: {e}"))
    }
}

impl From<openwinv_driver::DriverError> for StepError {
    fn from(e: openwinv_driver::DriverError) -> StepError {
        match e {
            openwinv_driver::DriverError::Transient(m) => StepError::Transient(m),
            openwinv_driver::DriverError::Permanent(m) => StepError::Permanent(m),
        }
    }
}

/// The operation as the engine hands it to a saga. `params` is the row's JSON text as the request
/// wrote it; the engine persists it unchanged with every save.
#[derive(Debug, Clone)]
pub struct OpContext {
    pub operation_id: String,
    pub account_id: String,
    pub kind: String,
    pub resource_id: String,
    pub params: String,
}

/// An operation kind as the engine drives it: steps by index. Written through [`Typed`].
/// Steps must be idempotent: a step may run again after a crash between its effect and the write
/// of its progress, and so may an undo.
#[async_trait::async_trait]
pub trait Saga: Send + Sync + 'static {
    /// e.g. `instance.create`.
    fn kind(&self) -> &'static str;
    fn steps(&self) -> &[StepDef];
    /// True when step `step` has nothing to do for this operation (a create without volumes has
    /// no volumes to attach). The engine then counts it done without running it and saves
    /// progress with the next step's; fault rules still apply to it. Only local (unpaced) steps
    /// are asked, and the answer must depend on the operation's input alone.
    fn noop(&self, _step: usize, _op: &OpContext) -> bool {
        false
    }
    async fn run(&self, step: usize, op: &OpContext) -> Result<(), StepError>;
    async fn undo(&self, step: usize, op: &OpContext) -> Result<(), StepError>;
    /// Called once every completed step has been undone: leave the resource in its failed state
    /// (for example `error`, or gone for a failed create). Must be idempotent.
    async fn failed(&self, op: &OpContext, error: &str) -> Result<(), StepError>;
}

/// The steps of one operation kind: a fieldless enum deriving `Serialize` with
/// `#[serde(rename_all = "snake_case")]`, whose serde names are the step names.
pub trait Steps: Copy + Serialize + Send + Sync + 'static {
    /// Every step, in the order they run (progress records the index into this list).
    const ALL: &'static [Self];
    /// Hypervisor work (paced by the simulated driver), or local bookkeeping.
    fn paced(self) -> bool;

    /// The step's stable name (its serde name).
    fn name(self) -> &'static str {
        variant_name(&self)
    }
}

/// The params of an operation kind without input: stored as `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NoParams {}

impl NoParams {
    /// The `params` text of an operation without input.
    pub const ENCODED: &'static str = "{}";
}

/// One operation as its steps see it: ids and the typed params.
#[derive(Debug, Clone)]
pub struct Op<P> {
    pub operation_id: String,
    pub account_id: String,
    pub resource_id: String,
    pub params: P,
}

/// An operation kind with a typed contract (omicron's one-file-per-saga): the request builds
/// `Params`, the steps read them, and `run` and `undo` match `Step` exhaustively.
#[async_trait::async_trait]
pub trait Operation: Send + Sync + 'static {
    /// The operation's input, as stored in the row's `params` (JSON).
    type Params: Serialize + DeserializeOwned + Send + Sync;
    type Step: Steps;
    /// e.g. `instance.create`.
    const KIND: &'static str;

    /// See [`Saga::noop`].
    fn noop(&self, _step: Self::Step, _op: &Op<Self::Params>) -> bool {
        false
    }
    async fn run(&self, step: Self::Step, op: &Op<Self::Params>) -> Result<(), StepError>;
    async fn undo(&self, step: Self::Step, op: &Op<Self::Params>) -> Result<(), StepError>;
    /// See [`Saga::failed`].
    async fn failed(&self, op: &Op<Self::Params>, error: &str) -> Result<(), StepError>;

    /// The `params` text of a new operation of this kind, for the row the request writes.
    fn encode(params: &Self::Params) -> String {
        serde_json::to_string(params).expect("operation params serialize")
    }
}

/// An [`Operation`] as the engine's [`Saga`].
pub struct Typed<O: Operation> {
    op: O,
    steps: Vec<StepDef>,
}

impl<O: Operation> Typed<O> {
    pub fn new(op: O) -> Typed<O> {
        let steps = O::Step::ALL.iter().map(|s| StepDef { name: s.name(), paced: s.paced() }).collect();
        Typed { op, steps }
    }

    /// The step names of `O`, in order (for fault rules and documentation).
    pub fn step_names() -> Vec<&'static str> {
        O::Step::ALL.iter().map(|s| s.name()).collect()
    }

    fn load(ctx: &OpContext) -> Result<Op<O::Params>, StepError> {
        // An empty column is an operation without input (`{}`).
        let text = if ctx.params.trim().is_empty() { "{}" } else { ctx.params.as_str() };
        let params = serde_json::from_str(text).map_err(|e| {
            StepError::Permanent(format!("the params of {} operation {} do not read: {e}", O::KIND, ctx.operation_id))
        })?;
        Ok(Op {
            operation_id: ctx.operation_id.clone(),
            account_id: ctx.account_id.clone(),
            resource_id: ctx.resource_id.clone(),
            params,
        })
    }

    fn step(i: usize) -> Result<O::Step, StepError> {
        O::Step::ALL.get(i).copied().ok_or_else(|| StepError::Permanent(format!("{} has no step {i}", O::KIND)))
    }
}

#[async_trait::async_trait]
impl<O: Operation> Saga for Typed<O> {
    fn kind(&self) -> &'static str {
        O::KIND
    }

    fn steps(&self) -> &[StepDef] {
        &self.steps
    }

    fn noop(&self, step: usize, ctx: &OpContext) -> bool {
        match (Self::step(step), Self::load(ctx)) {
            (Ok(s), Ok(op)) => self.op.noop(s, &op),
            _ => false,
        }
    }

    async fn run(&self, step: usize, ctx: &OpContext) -> Result<(), StepError> {
        let (step, op) = (Self::step(step)?, Self::load(ctx)?);
        self.op.run(step, &op).await
    }

    async fn undo(&self, step: usize, ctx: &OpContext) -> Result<(), StepError> {
        let (step, op) = (Self::step(step)?, Self::load(ctx)?);
        self.op.undo(step, &op).await
    }

    async fn failed(&self, ctx: &OpContext, error: &str) -> Result<(), StepError> {
        self.op.failed(&Self::load(ctx)?, error).await
    }
}

/// The serde name of a fieldless enum variant, as `&'static str` (serde hands unit variants'
/// names to the serializer as static strings). Anything else is a programming error.
fn variant_name<T: Serialize>(value: &T) -> &'static str {
    match value.serialize(VariantName) {
        Ok(name) => name,
        Err(NotAVariant) => panic!("a step must be a fieldless enum variant"),
    }
}

struct VariantName;

#[derive(Debug)]
struct NotAVariant;

impl std::fmt::Display for NotAVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a fieldless enum variant")
    }
}

impl std::error::Error for NotAVariant {}

impl serde::ser::Error for NotAVariant {
    fn custom<M: std::fmt::Display>(_: M) -> NotAVariant {
        NotAVariant
    }
}

macro_rules! refuse {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<&'static str, NotAVariant> { Err(NotAVariant) })*
    };
}

impl serde::Serializer for VariantName {
    type Ok = &'static str;
    type Error = NotAVariant;
    type SerializeSeq = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeTuple = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeTupleStruct = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeTupleVariant = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeMap = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeStruct = serde::ser::Impossible<&'static str, NotAVariant>;
    type SerializeStructVariant = serde::ser::Impossible<&'static str, NotAVariant>;

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<&'static str, NotAVariant> {
        Ok(variant)
    }

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
    );

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<&'static str, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotAVariant> {
        Err(NotAVariant)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotAVariant> {
        Err(NotAVariant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Step {
        AllocateAddresses,
        PowerOn,
    }

    impl Steps for Step {
        const ALL: &'static [Step] = &[Step::AllocateAddresses, Step::PowerOn];
        fn paced(self) -> bool {
            matches!(self, Step::PowerOn)
        }
    }

    #[test]
    fn step_names_are_the_snake_case_serde_names() {
        let names: Vec<_> = Step::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["allocate_addresses", "power_on"]);
    }

    #[test]
    fn no_params_are_stored_as_an_empty_object() {
        assert_eq!(serde_json::to_string(&NoParams {}).unwrap(), NoParams::ENCODED);
        let _: NoParams = serde_json::from_str(r#"{"left_over": 1}"#).unwrap();
    }

    #[test]
    #[should_panic(expected = "fieldless enum variant")]
    fn a_step_that_is_not_a_variant_is_refused() {
        variant_name(&3u8);
    }
}
