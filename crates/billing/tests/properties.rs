//! Property tests over random lifecycles on one clock: servers and volumes are created, resized,
//! powered off and on, and deleted at random moments spread over several months, and the usage
//! table evolves exactly as the store writes it (open at the change's second, close and switch
//! rates at `end_of_second`). Checked at every moment something happens, just before and just
//! after it:
//!
//! - the live bill never decreases within a month;
//! - the explanation lines sum to the price, one line per resource;
//! - the invoice of a month (rated after everything happened) equals the live bill at the month's
//!   last second;
//! - a server never pays more in a month than the highest monthly price it was charged at, and
//!   one that lives a whole month at one flavor pays exactly min(hours × rate, monthly);
//! - a resize switches the rate at the right second;
//! - time spent powered off is charged like time powered on;
//! - a [`Ledger`] brought up to date resource by resource, as the live bill's copy is, rates
//!   exactly as the whole table does;
//! - the split by day (the console's chart) has the same lines, its days sum to each line's
//!   amount exactly, and each day is the live bill at that day's end minus the one at the
//!   previous day's end.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use openwinv_billing::{
    Interval, Kind, Ledger, Line, Month, date_of, end_of_second, rate, rate_by_day, rate_total, total,
};
use proptest::prelude::*;

/// (hourly, monthly) of a few flavors, as in the default catalog, plus odd ones (the last reaches
/// its cap within two hours, so a resize to a higher cap changes the cap mid-month).
const FLAVORS: [(i64, i64); 6] =
    [(14, 9900), (23, 15900), (178, 127_900), (3600, 1_000_000), (7, 200_000), (100_000, 150_000)];
/// Monthly price of a volume (per-GB price × size).
const VOLUMES: [i64; 4] = [1500, 3000, 50 * 20_000, 7];

#[derive(Debug, Clone)]
enum Action {
    CreateServer(usize),
    CreateVolume(usize),
    Resize(usize, usize),
    Shutdown(usize),
    Start(usize),
    Delete(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..FLAVORS.len()).prop_map(Action::CreateServer),
        2 => (0..VOLUMES.len()).prop_map(Action::CreateVolume),
        3 => (any::<usize>(), 0..FLAVORS.len()).prop_map(|(r, f)| Action::Resize(r, f)),
        1 => any::<usize>().prop_map(Action::Shutdown),
        1 => any::<usize>().prop_map(Action::Start),
        2 => any::<usize>().prop_map(Action::Delete),
    ]
}

/// Seconds until the next event: often the same second, often minutes, sometimes weeks.
fn gap() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => Just(0i64),
        3 => 1i64..120,
        3 => 120i64..86_400,
        2 => 86_400i64..25 * 86_400,
    ]
}

fn zone() -> impl Strategy<Value = TimeZone> {
    prop_oneof![
        Just(TimeZone::get("Asia/Seoul").unwrap()),
        Just(TimeZone::UTC),
        Just(TimeZone::get("America/New_York").unwrap()),
    ]
}

/// The usage table, written the way the store writes it.
#[derive(Default, Clone)]
struct Table {
    intervals: Vec<Interval>,
    /// Resources alive (not deleted): (id, kind).
    alive: Vec<(String, Kind)>,
    /// Servers powered off.
    off: BTreeSet<String>,
    /// Independent of the intervals: the second each resource was created in and the one it was
    /// deleted in. It is charged for every second from the first through the second.
    life: BTreeMap<String, (i64, Option<i64>)>,
    next_id: usize,
    /// The same intervals, kept as the live bill keeps its copy: after each change, the changed
    /// resource's intervals replace what it held.
    ledger: Ledger,
}

impl Table {
    fn open(&mut self, id: &str, kind: Kind, (hourly, monthly): (i64, i64), start: i64) {
        self.intervals.push(Interval {
            resource_id: id.into(),
            kind,
            name: format!("name-{id}"),
            hourly,
            monthly,
            start,
            end: None,
        });
        self.changed(id);
    }

    fn close(&mut self, id: &str, end: i64) {
        for iv in self.intervals.iter_mut().filter(|iv| iv.resource_id == id && iv.end.is_none()) {
            iv.end = Some(end);
        }
        self.changed(id);
    }

    fn changed(&mut self, id: &str) {
        let fresh = self.intervals.iter().filter(|iv| iv.resource_id == id).cloned().collect();
        self.ledger.replace([id], fresh);
    }

    fn apply(&mut self, a: &Action, now: i64) {
        match *a {
            Action::CreateServer(f) => {
                let id = format!("INSTANCE-{:04}", self.next_id);
                self.next_id += 1;
                self.open(&id, Kind::Server, FLAVORS[f], now);
                self.life.insert(id.clone(), (now, None));
                self.alive.push((id, Kind::Server));
            }
            Action::CreateVolume(v) => {
                let id = format!("BS-{:04}", self.next_id);
                self.next_id += 1;
                self.open(&id, Kind::Volume, (0, VOLUMES[v]), now);
                self.life.insert(id.clone(), (now, None));
                self.alive.push((id, Kind::Volume));
            }
            Action::Resize(r, f) => {
                let servers: Vec<String> =
                    self.alive.iter().filter(|(_, k)| *k == Kind::Server).map(|(id, _)| id.clone()).collect();
                if let Some(id) = (!servers.is_empty()).then(|| servers[r % servers.len()].clone()) {
                    self.close(&id, end_of_second(now));
                    self.open(&id, Kind::Server, FLAVORS[f], end_of_second(now));
                }
            }
            // Power changes do not touch usage: off time is charged.
            Action::Shutdown(r) | Action::Start(r) => {
                let servers: Vec<String> =
                    self.alive.iter().filter(|(_, k)| *k == Kind::Server).map(|(id, _)| id.clone()).collect();
                if !servers.is_empty() {
                    let id = servers[r % servers.len()].clone();
                    if matches!(a, Action::Shutdown(_)) {
                        self.off.insert(id);
                    } else {
                        self.off.remove(&id);
                    }
                }
            }
            Action::Delete(r) => {
                if !self.alive.is_empty() {
                    let (id, _) = self.alive.remove(r % self.alive.len());
                    self.close(&id, end_of_second(now));
                    if let Some(life) = self.life.get_mut(&id) {
                        life.1 = Some(now);
                    }
                }
            }
        }
    }
}

/// The live bill at `now`: the current month, seconds up to and including `now`.
fn live(t: &Table, now: i64, tz: &TimeZone) -> (Month, Vec<Line>) {
    let m = Month::containing(now, tz);
    let lines = rate(&t.intervals, m.period(tz), end_of_second(now));
    // The price without lines (the live bill's fast path) is the same, in any order.
    assert_eq!(rate_total(&t.intervals, m.period(tz), end_of_second(now)), total(&lines));
    let mut sorted = t.intervals.clone();
    sorted.sort_by(|a, b| (&a.resource_id, a.start).cmp(&(&b.resource_id, b.start)));
    assert_eq!(rate(&sorted, m.period(tz), end_of_second(now)), lines);
    // The live bill's copy, changed resource by resource, and one built whole, rate the same.
    assert_eq!(rate(&t.ledger, m.period(tz), end_of_second(now)), lines);
    assert_eq!(rate_total(&t.ledger, m.period(tz), end_of_second(now)), total(&lines));
    assert_eq!(t.ledger, Ledger::new(t.intervals.clone()));
    // Resources add up on their own (the live bill updates its total by the changed ones).
    let ids: Vec<&str> = t.intervals.iter().map(|iv| iv.resource_id.as_str()).collect();
    let distinct: BTreeSet<&str> = ids.iter().copied().collect();
    let each_once: i64 =
        distinct.iter().map(|id| t.ledger.rate_total_of([*id], m.period(tz), end_of_second(now))).sum();
    assert_eq!(each_once, total(&lines));
    assert_eq!(t.ledger.rate_total_of(ids.iter().copied(), m.period(tz), end_of_second(now)), total(&lines));
    (m, lines)
}

/// Checks the lines of month `m` counted up to `upto` against the table they were rated from.
fn check_lines(lines: &[Line], table: &Table, m: Month, upto: i64, tz: &TimeZone) -> Result<(), TestCaseError> {
    let intervals = &table.intervals;
    let ids: BTreeSet<&str> = lines.iter().map(|l| l.resource_id.as_str()).collect();
    prop_assert_eq!(ids.len(), lines.len(), "one line per resource");
    // Nothing counted twice, nothing lost: the seconds of every line are the seconds its resource
    // existed in the month so far, and every resource that existed has a line.
    let p = m.period(tz);
    let upto = upto.min(p.end);
    let mut existed = 0;
    for (id, (born, died)) in &table.life {
        let (from, to) = (born.max(&p.start), died.map_or(upto, |d| end_of_second(d).min(upto)));
        if to > *from {
            existed += 1;
            let line = lines.iter().find(|l| &l.resource_id == id);
            prop_assert_eq!(line.map(|l| l.seconds), Some(to - from), "seconds of {}", id);
        }
    }
    prop_assert_eq!(existed, lines.len());
    prop_assert_eq!(total(lines), lines.iter().map(|l| l.amount).sum::<i64>());
    for l in lines {
        prop_assert!(l.seconds > 0 && l.amount >= 0);
        prop_assert!(p.start <= l.first && l.first <= l.last && l.last < p.end);
        if l.kind == Kind::Server {
            let cap = intervals
                .iter()
                .filter(|iv| iv.resource_id == l.resource_id && iv.start < p.end && iv.end.is_none_or(|e| e > p.start))
                .map(|iv| iv.monthly)
                .max()
                .unwrap_or(0);
            prop_assert!(l.amount <= cap, "monthly cap: {} > {}", l.amount, cap);
        }
    }
    Ok(())
}

/// The split by day of month `m` up to `upto` against [`rate`]: same lines, days summing to each
/// amount, and every day the difference of the rating at its end and at the previous day's end.
fn check_days(intervals: &[Interval], lines: &[Line], m: Month, upto: i64, tz: &TimeZone) -> Result<(), TestCaseError> {
    let p = m.period(tz);
    let by_day = rate_by_day(intervals, m, tz, upto);
    let split: Vec<&Line> = by_day.lines.iter().map(|d| &d.line).collect();
    prop_assert_eq!(split, lines.iter().collect::<Vec<_>>());
    // The month's first day through the day of the last counted second, one after the other.
    let until = upto.min(p.end);
    prop_assert_eq!(by_day.days.first().copied(), Some(m.first_day()));
    prop_assert_eq!(by_day.days.last().copied(), Some(date_of((until - 1).max(p.start), tz)));
    for w in by_day.days.windows(2) {
        prop_assert_eq!(w[0].tomorrow().ok(), Some(w[1]));
    }
    for d in &by_day.lines {
        prop_assert_eq!(d.days.len(), by_day.days.len());
        prop_assert_eq!(d.days.iter().sum::<i64>(), d.line.amount, "days of {}", &d.line.resource_id);
        prop_assert!(d.days.iter().all(|&x| x >= 0), "a negative day for {}: {:?}", &d.line.resource_id, &d.days);
    }
    // Each day against the rating at its end (the next day's first second, or `upto`).
    let mut before: BTreeMap<&str, i64> = BTreeMap::new();
    for i in 0..by_day.days.len() {
        let end = match by_day.days.get(i + 1) {
            Some(next) => next.to_zoned(tz.clone()).unwrap().timestamp().as_second().min(until),
            None => until,
        };
        let at_end = rate(intervals, p, end);
        for d in &by_day.lines {
            let id = d.line.resource_id.as_str();
            let now = at_end.iter().find(|l| l.resource_id == id).map_or(0, |l| l.amount);
            let prev = before.insert(id, now).unwrap_or(0);
            prop_assert_eq!(d.days[i], now - prev, "day {} of {}", i + 1, id);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_lifecycles(
        tz in zone(),
        // Somewhere in 2026–2027, not aligned to anything.
        start in 1_767_225_600i64..1_830_000_000,
        events in proptest::collection::vec((gap(), action()), 1..40),
    ) {
        let mut table = Table::default();
        let mut now = start;
        let mut last: Option<(Month, i64)> = None;
        // The table as it was at each month's last second, for the invoice check.
        let mut at_month_end: Vec<(Month, Table)> = Vec::new();
        let probe = |table: &Table, now: i64, last: &mut Option<(Month, i64)>| -> Result<(), TestCaseError> {
            let (m, lines) = live(table, now, &tz);
            check_lines(&lines, table, m, end_of_second(now), &tz)?;
            check_days(&table.intervals, &lines, m, end_of_second(now), &tz)?;
            let price = total(&lines);
            if let Some((lm, lp)) = *last && lm == m {
                prop_assert!(price >= lp, "live bill went down in {:?} at {}: {} → {}", m, now, lp, price);
            }
            *last = Some((m, price));
            Ok(())
        };
        for (dt, a) in &events {
            let next = now + dt;
            // Months that end before the next event: remember the table at their last second.
            let mut m = Month::containing(now, &tz);
            while m.period(&tz).end <= next {
                let end = m.period(&tz).end;
                probe(&table, end - 1, &mut last)?;
                at_month_end.push((m, table.clone()));
                m = m.next();
            }
            now = next;
            probe(&table, now, &mut last)?;
            table.apply(a, now);
            probe(&table, now, &mut last)?;
        }
        // Much later: every month seen so far is closed; its invoice is what the live bill said at
        // its last second.
        for (m, then) in &at_month_end {
            let p = m.period(&tz);
            let invoice = rate(&table.intervals, p, p.end);
            let live_then = rate(&then.intervals, p, end_of_second(p.end - 1));
            prop_assert_eq!(&invoice, &live_then, "invoice of {:?}", m);
            check_lines(&invoice, &table, *m, p.end, &tz)?;
        }
    }

    /// 1 won per second, then 2 won per second after a resize completing during the second `r`:
    /// the live bill at `t` is exactly the seconds charged at each rate.
    #[test]
    fn a_resize_switches_rate_at_the_next_second(
        created in 0i64..1000,
        resized_after in 0i64..1000,
        read_after in 0i64..3000,
    ) {
        let tz = TimeZone::UTC;
        let month = Month { year: 2026, month: 7 };
        let p = month.period(&tz);
        let s = p.start + created;
        let r = s + resized_after;
        let mut t = Table::default();
        t.open("a", Kind::Server, (3600, i64::MAX / 4), s);
        // Before the resize completes (reads up to r).
        for now in [s, s + resized_after / 2, r] {
            prop_assert_eq!(total(&live(&t, now, &tz).1), now + 1 - s);
        }
        t.close("a", end_of_second(r));
        t.open("a", Kind::Server, (7200, i64::MAX / 4), end_of_second(r));
        let now = r + read_after;
        // The second `r` is charged at the old rate, every later one at the new rate.
        prop_assert_eq!(total(&live(&t, now, &tz).1), (r + 1 - s) + 2 * (now - r));
    }

    /// Power state does not matter: a server that spends most of its life off pays per second of
    /// existence, and a whole month at one flavor costs min(hours × rate, monthly price).
    #[test]
    fn off_time_is_charged_and_the_cap_holds(
        f in 0..FLAVORS.len(),
        offs in proptest::collection::vec((0i64..86_400, any::<bool>()), 0..10),
        m in 1i8..=12,
        tz in zone(),
    ) {
        let month = Month { year: 2027, month: m };
        let p = month.period(&tz);
        let mut t = Table::default();
        t.apply(&Action::CreateServer(f), p.start - 3600);
        let mut now = p.start;
        for (dt, off) in &offs {
            now += dt;
            t.apply(&if *off { Action::Shutdown(0) } else { Action::Start(0) }, now);
        }
        let (hourly, monthly) = FLAVORS[f];
        let lines = rate(&t.intervals, p, end_of_second(now));
        let seconds = now + 1 - p.start;
        prop_assert_eq!(lines[0].seconds, seconds);
        prop_assert_eq!(lines[0].amount, (hourly * seconds / 3600).min(monthly));
        let whole = rate(&t.intervals, p, p.end);
        prop_assert_eq!(whole[0].amount, (hourly * p.seconds() / 3600).min(monthly));
    }
}
