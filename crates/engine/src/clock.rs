//! The one server clock. Everything that needs time reads it: the signature window, the rate
//! limiter, timestamps on rows, lifecycle delays, and (later) metering and the month close.
//!
//! It is the host's real time plus an offset. With the simulated driver an operator may set or
//! advance it; it keeps running from the new point. The offset lives in the store so that every
//! server process on one database shares it and a restart keeps it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use openwinv_store::Store;

const OFFSET_KEY: &str = "clock_offset_ns";

#[derive(Debug)]
pub struct Clock {
    /// Nanoseconds from the host's real time: exact, so that a clock set to T reads T or later.
    offset_ns: AtomicI64,
    /// How many times this process set the clock. A `load` applies what it read only if no `set`
    /// ran meanwhile: its read may predate the set, and applying it would undo the set (the
    /// shared-state refresh reading the old offset while an operator's set was under way).
    sets: Mutex<u64>,
    settable: bool,
}

impl Clock {
    pub fn new(settable: bool) -> Arc<Clock> {
        Arc::new(Clock { offset_ns: AtomicI64::new(0), sets: Mutex::new(0), settable })
    }

    pub fn now(&self) -> Timestamp {
        let real = Timestamp::now();
        real.checked_add(SignedDuration::from_nanos(self.offset_ns.load(Ordering::Relaxed))).unwrap_or(real)
    }

    /// Unix milliseconds.
    pub fn unix_ms(&self) -> i64 {
        self.now().as_millisecond()
    }

    /// Unix seconds.
    pub fn unix(&self) -> i64 {
        self.now().as_second()
    }

    /// Time since the Unix epoch, for the rate limiter.
    pub fn since_epoch(&self) -> Duration {
        let ns = self.now().as_nanosecond();
        Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ns.load(Ordering::Relaxed) / 1_000_000
    }

    pub fn settable(&self) -> bool {
        self.settable
    }

    /// Makes `now()` return `to` from this moment on, and records it for the other processes.
    pub async fn set(&self, store: &Store, to: Timestamp) -> openwinv_store::Result<()> {
        let offset = i64::try_from(to.duration_since(Timestamp::now()).as_nanos()).unwrap_or(i64::MAX);
        store.meta_set(OFFSET_KEY, &offset.to_string()).await?;
        let mut sets = self.sets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.offset_ns.store(offset, Ordering::Relaxed);
        *sets += 1;
        Ok(())
    }

    /// Reads the shared offset from the store; none recorded (a fresh or reset store) is the
    /// host's time.
    pub async fn load(&self, store: &Store) -> openwinv_store::Result<()> {
        let sets_before = *self.sets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let offset = match store.meta_get(OFFSET_KEY).await? {
            Some(v) => match v.parse::<i64>() {
                Ok(offset) => offset,
                Err(_) => return Ok(()),
            },
            None => 0,
        };
        let sets = self.sets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *sets == sets_before {
            self.offset_ns.store(offset, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// `YYYY-MM-DD HH:MM:SS` in the billing time zone (spec §5).
pub fn format_timestamp(unix: i64, tz: &jiff::tz::TimeZone) -> String {
    Timestamp::from_second(unix)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_in_the_billing_zone() {
        let seoul = jiff::tz::TimeZone::get("Asia/Seoul").unwrap();
        // 2026-11-30T15:00:00Z is midnight of Dec 1 in Seoul.
        assert_eq!(format_timestamp(1_796_050_800, &seoul), "2026-12-01 00:00:00");
        assert_eq!(format_timestamp(1_796_050_800, &jiff::tz::TimeZone::UTC), "2026-11-30 15:00:00");
    }
}
