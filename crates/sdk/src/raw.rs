//! Answers as the server sent them: [`RawLog`] keeps the `result` of each successful answer, for
//! tools that print the server's rows rather than typed rows serialized again, so that fields the
//! wire types do not model are never dropped.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

/// A shared log of the `result` of every successful answer a client received. Attach it with
/// `Client::with_raw_log` or `AdminClient::with_raw_log`; clones share one log.
#[derive(Debug, Clone, Default)]
pub struct RawLog(Arc<Mutex<Vec<Value>>>);

impl RawLog {
    pub fn new() -> RawLog {
        RawLog::default()
    }

    /// Keeps the `result` of a success envelope.
    pub(crate) fn record(&self, envelope: &Value) {
        if let Some(result) = envelope.get("result") {
            self.lock().push(result.clone());
        }
    }

    /// The rows of every answer received since the last call, in order, and forgets them:
    /// `result` arrays are concatenated, any other `result` (a string acknowledgement) is one
    /// item. `None` when no answer was received.
    pub fn take_rows(&self) -> Option<Vec<Value>> {
        let results = std::mem::take(&mut *self.lock());
        if results.is_empty() {
            return None;
        }
        let mut rows = Vec::new();
        for result in results {
            match result {
                Value::Array(items) => rows.extend(items),
                other => rows.push(other),
            }
        }
        Some(rows)
    }

    /// Forgets the answers received so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_of_several_answers_are_concatenated_once() {
        let log = RawLog::new();
        assert_eq!(log.take_rows(), None);
        log.record(&json!({"error_code": "SUCCESS", "result": [{"a": 1, "unmodelled": true}]}));
        log.clone().record(&json!({"error_code": "SUCCESS", "result": [{"a": 2}, {"a": 3}]}));
        log.record(&json!({"error_code": "SUCCESS", "result": "deleted"}));
        log.record(&json!({"no": "result"}));
        assert_eq!(
            log.take_rows().unwrap(),
            vec![json!({"a": 1, "unmodelled": true}), json!({"a": 2}), json!({"a": 3}), json!("deleted")]
        );
        assert_eq!(log.take_rows(), None);
        log.record(&json!({"result": []}));
        assert_eq!(log.take_rows(), Some(vec![]), "an empty answer is still an answer");
        log.record(&json!({"result": [1]}));
        log.clear();
        assert_eq!(log.take_rows(), None);
    }
}
