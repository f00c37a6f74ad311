//! Metering arithmetic (spec §10), pure: no I/O, no floating point, integer won only.
//!
//! Usage is recorded as intervals: a resource was charged at one rate from `start` until `end`
//! (Unix seconds, `end` exclusive; `None` while it is still running). The store opens and closes
//! them in the same transaction as the change that starts or stops a charge; this crate turns
//! them into money.
//!
//! # Seconds
//!
//! A second is charged as soon as it begins. An interval opened at `t` charges the second `t`;
//! a change that happens during the second `t` (a resize completing, a deletion) ends the old
//! interval at `t + 1` ([`end_of_second`]), and a resize's new rate applies from `t + 1`. So the
//! live bill read at `t` covers the seconds up to and including `t`, never goes down within a
//! month, and at a month's last second it equals what the month's invoice will say.
//!
//! # Rating, per resource and calendar month (in the billing time zone)
//!
//! - server: Σ hourly rate × seconds / 3600, floored, capped at the highest monthly price among
//!   the rates it was charged at in that month (the cap never falls within a month, so neither
//!   does the amount);
//! - volume: Σ monthly price × seconds / seconds of that month, floored (a volume that exists the
//!   whole month costs exactly its monthly price).
//!
//! Fractions are kept exact until the single floor per resource and month.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// What kind of resource an interval meters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An instance: hourly rate, monthly cap.
    Server,
    /// A block-storage volume: monthly price (per-GB price × size), pro-rated by the second.
    Volume,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Server, Kind::Volume];

    /// The stored name: `server` or `volume`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Volume => "volume",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "server" => Some(Kind::Server),
            "volume" => Some(Kind::Volume),
            _ => None,
        }
    }

    /// The bill group this kind is listed under (spec §10).
    pub fn group_name(self) -> &'static str {
        match self {
            Kind::Server => "서버",
            Kind::Volume => "블록 스토리지",
        }
    }

    /// The unit of the rate shown in explanations: `hour` for servers, `month` for volumes.
    pub fn rate_unit(self) -> &'static str {
        match self {
            Kind::Server => "hour",
            Kind::Volume => "month",
        }
    }
}

/// One stretch of time a resource was charged at one rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub resource_id: String,
    pub kind: Kind,
    /// The resource's name, for bill lines.
    pub name: String,
    /// Won per hour (servers; 0 for volumes).
    pub hourly: i64,
    /// Won per month: the cap (servers) or the price (volumes).
    pub monthly: i64,
    /// First charged second (Unix seconds).
    pub start: i64,
    /// First second no longer charged; `None` while open.
    pub end: Option<i64>,
}

/// The end of an interval closed by a change that happened during the second `now`: that second
/// was already charged, so the interval ends after it. A resize's new rate starts here too.
pub fn end_of_second(now: i64) -> i64 {
    now.saturating_add(1)
}

/// VAT: floor(price × 10 / 100) (spec §5).
pub fn vat(price: i64) -> i64 {
    price.max(0) / 10
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    pub year: i16,
    /// 1–12.
    pub month: i8,
}

impl Month {
    /// The month containing the instant `unix` in `tz`.
    pub fn containing(unix: i64, tz: &TimeZone) -> Month {
        let z = Timestamp::from_second(unix).unwrap_or(Timestamp::UNIX_EPOCH).to_zoned(tz.clone());
        Month { year: z.year(), month: z.month() }
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month { year: self.year.saturating_add(1), month: 1 }
        } else {
            Month { year: self.year, month: self.month + 1 }
        }
    }

    pub fn prev(self) -> Month {
        if self.month == 1 {
            Month { year: self.year.saturating_sub(1), month: 12 }
        } else {
            Month { year: self.year, month: self.month - 1 }
        }
    }

    pub fn first_day(self) -> Date {
        Date::new(self.year, self.month, 1).unwrap_or(Date::MIN)
    }

    pub fn last_day(self) -> Date {
        self.first_day().last_of_month()
    }

    /// The first instant of the month in `tz`, in Unix seconds.
    pub fn start(self, tz: &TimeZone) -> i64 {
        self.first_day().to_zoned(tz.clone()).map_or(0, |z| z.timestamp().as_second())
    }

    /// The month's bounds in `tz`: [start, start of the next month).
    pub fn period(self, tz: &TimeZone) -> Period {
        Period { start: self.start(tz), end: self.next().start(tz) }
    }

    /// `YYYY-MM`, the month's key in the store.
    pub fn key(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// Reads a key written by [`Month::key`].
    pub fn parse_key(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        let (year, month) = (y.parse::<i16>().ok()?, m.parse::<i8>().ok()?);
        Date::new(year, month, 1).ok()?;
        Some(Month { year, month })
    }

    /// The regular bill's name, e.g. `2026년 11월 정기 청구`.
    pub fn bill_name(self) -> String {
        format!("{}년 {}월 정기 청구", self.year, self.month)
    }
}

/// A month's bounds in Unix seconds: [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

impl Period {
    pub fn seconds(self) -> i64 {
        (self.end - self.start).max(0)
    }
}

/// `YYYY-MM-DD` of the instant `unix` in `tz`.
pub fn date_of(unix: i64, tz: &TimeZone) -> Date {
    Timestamp::from_second(unix).unwrap_or(Timestamp::UNIX_EPOCH).to_zoned(tz.clone()).date()
}

/// What one resource costs in one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub resource_id: String,
    pub kind: Kind,
    /// The name of its latest interval.
    pub name: String,
    /// The rate of its latest interval: won per hour (servers) or per month (volumes).
    pub rate: i64,
    /// Charged seconds in the month.
    pub seconds: i64,
    /// Won, floored once.
    pub amount: i64,
    /// First charged second.
    pub first: i64,
    /// Last charged second (inclusive).
    pub last: i64,
}

/// Rates `intervals` (any resources, any order) for the month `period`, counting the seconds
/// before `upto`: the month's end for an invoice, `now + 1` for the live bill. Returns one line
/// per resource with at least one charged second: servers first, then volumes, each by resource
/// id.
pub fn rate<S: InOrder + ?Sized>(intervals: &S, period: Period, upto: i64) -> Vec<Line> {
    let mut lines = Vec::new();
    for_each_resource(intervals.in_order(), period, upto, |latest, acc| {
        lines.push(Line {
            resource_id: latest.resource_id.clone(),
            kind: latest.kind,
            name: latest.name.clone(),
            rate: latest.monthly_or_hourly(),
            seconds: acc.seconds,
            amount: acc.amount,
            first: acc.first,
            last: acc.last,
        });
    });
    // By resource id already; servers first (stable).
    lines.sort_by_key(|l| l.kind);
    lines
}

/// The price (VAT excluded) that [`rate`] would give, without building the lines.
pub fn rate_total<S: InOrder + ?Sized>(intervals: &S, period: Period, upto: i64) -> i64 {
    let mut sum = 0i64;
    for_each_resource(intervals.in_order(), period, upto, |_, acc| sum = sum.saturating_add(acc.amount));
    sum
}

/// What one resource accrued in the month.
struct Acc {
    seconds: i64,
    amount: i64,
    first: i64,
    last: i64,
}

/// Intervals in the order the rating reads them: by resource id, kind, then start.
pub trait InOrder {
    fn in_order(&self) -> Box<dyn Iterator<Item = &Interval> + '_>;
}

/// Any intervals in any order: the store hands them over sorted by resource and start, so
/// usually nothing needs sorting here.
impl InOrder for [Interval] {
    fn in_order(&self) -> Box<dyn Iterator<Item = &Interval> + '_> {
        fn key(iv: &Interval) -> (&str, Kind, i64) {
            (iv.resource_id.as_str(), iv.kind, iv.start)
        }
        if self.is_sorted_by(|a, b| key(a) <= key(b)) {
            Box::new(self.iter())
        } else {
            let mut v: Vec<&Interval> = self.iter().collect();
            v.sort_by(|a, b| key(a).cmp(&key(b)));
            Box::new(v.into_iter())
        }
    }
}

impl InOrder for Vec<Interval> {
    fn in_order(&self) -> Box<dyn Iterator<Item = &Interval> + '_> {
        self.as_slice().in_order()
    }
}

impl<const N: usize> InOrder for [Interval; N] {
    fn in_order(&self) -> Box<dyn Iterator<Item = &Interval> + '_> {
        self.as_slice().in_order()
    }
}

/// Intervals kept by resource, always in rating order: replacing the intervals of a few
/// resources costs those resources, not the month (the live bill's copy of an account's month,
/// brought up to date after each change while thousands of other resources stay as they were).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    by_resource: BTreeMap<String, Vec<Interval>>,
}

impl Ledger {
    /// The intervals of `intervals`, in any order.
    pub fn new(intervals: Vec<Interval>) -> Ledger {
        let mut ledger = Ledger::default();
        ledger.add(intervals);
        ledger
    }

    /// Replaces every interval of the resources `changed` with `fresh` (the resources' intervals
    /// now; a resource of `changed` with none in `fresh` is gone).
    pub fn replace<'a>(&mut self, changed: impl IntoIterator<Item = &'a str>, fresh: Vec<Interval>) {
        for id in changed {
            self.by_resource.remove(id);
        }
        self.add(fresh);
    }

    fn add(&mut self, intervals: Vec<Interval>) {
        for iv in intervals {
            let of = self.by_resource.entry(iv.resource_id.clone()).or_default();
            let at = of.partition_point(|o| (o.kind, o.start) <= (iv.kind, iv.start));
            of.insert(at, iv);
        }
    }

    /// How many intervals it holds.
    pub fn len(&self) -> usize {
        self.by_resource.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_resource.is_empty()
    }

    /// What the resources `ids` (any order, repeats allowed) add to [`rate_total`] of the whole
    /// ledger: each resource's amount is floored and capped on its own, so the total of a ledger
    /// whose resources `ids` changed is the total before, minus this before the change, plus
    /// this after it. A rate-by-resource, not a rate of the month: costs `ids`' intervals.
    pub fn rate_total_of<'a>(&self, ids: impl IntoIterator<Item = &'a str>, period: Period, upto: i64) -> i64 {
        let ids: std::collections::BTreeSet<&str> = ids.into_iter().collect();
        let ordered = Box::new(ids.into_iter().filter_map(|id| self.by_resource.get(id)).flatten());
        let mut sum = 0i64;
        for_each_resource(ordered, period, upto, |_, acc| sum = sum.saturating_add(acc.amount));
        sum
    }
}

impl InOrder for Ledger {
    fn in_order(&self) -> Box<dyn Iterator<Item = &Interval> + '_> {
        Box::new(self.by_resource.values().flatten())
    }
}

/// Calls `emit` once per resource with charged seconds, in resource-id order, with its latest
/// interval and what it accrued.
fn for_each_resource<'a>(
    ordered: Box<dyn Iterator<Item = &'a Interval> + 'a>,
    period: Period,
    upto: i64,
    mut emit: impl FnMut(&'a Interval, Acc),
) {
    let until = upto.min(period.end);
    let month_seconds = i128::from(period.seconds().max(1));
    // The resource being accumulated: its latest counted interval, Σ rate × seconds, the cap.
    let mut current: Option<(&'a Interval, i128, i64, Acc)> = None;
    let finish = |(latest, numerator, cap, mut acc): (&'a Interval, i128, i64, Acc),
                  emit: &mut dyn FnMut(&'a Interval, Acc)| {
        acc.amount = amount(latest.kind, numerator, cap, month_seconds);
        emit(latest, acc);
    };
    for iv in ordered {
        let from = iv.start.max(period.start);
        let to = iv.end.unwrap_or(i64::MAX).min(until);
        if to <= from {
            continue;
        }
        let seconds = to - from;
        let add = i128::from(iv.monthly_or_hourly()) * i128::from(seconds);
        match &mut current {
            Some((latest, numerator, cap, acc)) if latest.resource_id == iv.resource_id && latest.kind == iv.kind => {
                *numerator += add;
                *cap = (*cap).max(iv.monthly);
                acc.seconds += seconds;
                acc.first = acc.first.min(from);
                acc.last = acc.last.max(to - 1);
                *latest = iv;
            }
            _ => {
                if let Some(done) = current.take() {
                    finish(done, &mut emit);
                }
                current = Some((iv, add, iv.monthly, Acc { seconds, amount: 0, first: from, last: to - 1 }));
            }
        }
    }
    if let Some(done) = current.take() {
        finish(done, &mut emit);
    }
}

/// The won a resource owes for Σ rate × seconds = `numerator` under the monthly `cap`: the one
/// floor per resource and month.
fn amount(kind: Kind, numerator: i128, cap: i64, month_seconds: i128) -> i64 {
    let amount = match kind {
        Kind::Server => (numerator / 3600).min(i128::from(cap)),
        Kind::Volume => numerator / month_seconds,
    };
    i64::try_from(amount.max(0)).unwrap_or(i64::MAX)
}

/// One resource's month so far ([`rate`]'s line) and its amount split by day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayLine {
    pub line: Line,
    /// Won per day of [`ByDay::days`]; they sum to `line.amount` exactly.
    pub days: Vec<i64>,
}

/// A month so far split by day (of the billing time zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByDay {
    /// The month's first day to the day of the last counted second.
    pub days: Vec<Date>,
    /// The lines of [`rate`], in its order, each with its days.
    pub lines: Vec<DayLine>,
}

/// [`rate`] for the month `month` up to `upto`, with each resource's amount split by day in one
/// pass. A day's amount is what [`rate`] gives at that day's end minus what it gives at the
/// previous day's end (the floor and the cap are applied to the running sums, never per day), so
/// the days sum to the month's amount exactly and none is negative.
pub fn rate_by_day<S: InOrder + ?Sized>(intervals: &S, month: Month, tz: &TimeZone, upto: i64) -> ByDay {
    let period = month.period(tz);
    let until = upto.min(period.end);
    // The days and their first seconds; the last day ends at `until`.
    let mut days = vec![month.first_day()];
    let mut starts = vec![period.start];
    let last_day = date_of(until.saturating_sub(1).max(period.start), tz);
    while let Some(&d) = days.last()
        && d < last_day
        && let Ok(next) = d.tomorrow()
    {
        let Ok(z) = next.to_zoned(tz.clone()) else { break };
        days.push(next);
        starts.push(z.timestamp().as_second());
    }
    let n = days.len();
    let end_of = |d: usize| if d + 1 < n { starts[d + 1].min(until) } else { until };
    let month_seconds = i128::from(period.seconds().max(1));

    let ordered: Vec<&Interval> = intervals.in_order().collect();
    let mut lines = Vec::new();
    // Per day of the resource being read: Σ rate × seconds, and the highest cap charged.
    let mut numerators = vec![0i128; n];
    let mut caps = vec![0i64; n];
    for group in ordered.chunk_by(|a, b| a.resource_id == b.resource_id && a.kind == b.kind) {
        numerators.fill(0);
        caps.fill(0);
        let mut latest: Option<&Interval> = None;
        let (mut seconds, mut first, mut last) = (0i64, i64::MAX, i64::MIN);
        for &iv in group {
            let from = iv.start.max(period.start);
            let to = iv.end.unwrap_or(i64::MAX).min(until);
            if to <= from {
                continue;
            }
            latest = Some(iv);
            seconds += to - from;
            first = first.min(from);
            last = last.max(to - 1);
            let rate = i128::from(iv.monthly_or_hourly());
            // The day holding `from`, then the following ones while the interval lasts.
            let mut d = starts.partition_point(|&s| s <= from).saturating_sub(1);
            while d < n && starts[d] < to {
                let (a, b) = (from.max(starts[d]), to.min(end_of(d)));
                if b > a {
                    numerators[d] += rate * i128::from(b - a);
                    caps[d] = caps[d].max(iv.monthly);
                }
                d += 1;
            }
        }
        let Some(latest) = latest else { continue };
        let (mut numerator, mut cap, mut before) = (0i128, 0i64, 0i64);
        let mut split = Vec::with_capacity(n);
        for d in 0..n {
            numerator += numerators[d];
            cap = cap.max(caps[d]);
            let now = amount(latest.kind, numerator, cap, month_seconds);
            split.push(now - before);
            before = now;
        }
        lines.push(DayLine {
            line: Line {
                resource_id: latest.resource_id.clone(),
                kind: latest.kind,
                name: latest.name.clone(),
                rate: latest.monthly_or_hourly(),
                seconds,
                amount: before,
                first,
                last,
            },
            days: split,
        });
    }
    lines.sort_by_key(|l| l.line.kind);
    ByDay { days, lines }
}

impl Interval {
    /// The rate seconds are multiplied by: hourly for servers, monthly for volumes.
    fn monthly_or_hourly(&self) -> i64 {
        match self.kind {
            Kind::Server => self.hourly,
            Kind::Volume => self.monthly,
        }
    }
}

/// The sum of the lines' amounts: the price, VAT excluded.
pub fn total(lines: &[Line]) -> i64 {
    lines.iter().fold(0i64, |sum, l| sum.saturating_add(l.amount))
}

/// A bill group: the lines of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<'a> {
    pub kind: Kind,
    pub sub_total: i64,
    pub lines: Vec<&'a Line>,
}

/// The lines by kind, servers first; kinds without lines are left out.
pub fn groups(lines: &[Line]) -> Vec<Group<'_>> {
    Kind::ALL
        .iter()
        .map(|&kind| {
            let mine: Vec<&Line> = lines.iter().filter(|l| l.kind == kind).collect();
            Group { kind, sub_total: mine.iter().fold(0i64, |s, l| s.saturating_add(l.amount)), lines: mine }
        })
        .filter(|g| !g.lines.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seoul() -> TimeZone {
        TimeZone::get("Asia/Seoul").unwrap()
    }

    fn server(id: &str, hourly: i64, monthly: i64, start: i64, end: Option<i64>) -> Interval {
        Interval { resource_id: id.into(), kind: Kind::Server, name: id.into(), hourly, monthly, start, end }
    }

    #[test]
    fn months_follow_the_billing_zone() {
        // 2026-11-30T15:00:00Z is midnight of 1 December in Seoul.
        let t = 1_796_050_800;
        assert_eq!(Month::containing(t, &seoul()), Month { year: 2026, month: 12 });
        assert_eq!(Month::containing(t - 1, &seoul()), Month { year: 2026, month: 11 });
        assert_eq!(Month::containing(t, &TimeZone::UTC), Month { year: 2026, month: 11 });
        let dec = Month { year: 2026, month: 12 };
        assert_eq!(dec.start(&seoul()), t);
        assert_eq!(dec.period(&seoul()).seconds(), 31 * 86_400);
        assert_eq!(dec.next(), Month { year: 2027, month: 1 });
        assert_eq!(Month { year: 2027, month: 1 }.prev(), dec);
        assert_eq!(dec.key(), "2026-12");
        assert_eq!(Month::parse_key("2026-12"), Some(dec));
        assert_eq!(Month::parse_key("2026-13"), None);
        assert_eq!(dec.bill_name(), "2026년 12월 정기 청구");
        assert_eq!(Month { year: 2026, month: 3 }.bill_name(), "2026년 3월 정기 청구");
        assert_eq!(Month { year: 2028, month: 2 }.last_day().to_string(), "2028-02-29");
    }

    #[test]
    fn servers_pay_per_second_up_to_the_cap() {
        let p = Month { year: 2026, month: 11 }.period(&seoul());
        // One hour and a half at 14 won/hour: 21 won.
        let l = rate(&[server("a", 14, 9900, p.start, Some(p.start + 5400))], p, p.end);
        assert_eq!((l[0].seconds, l[0].amount), (5400, 21));
        // The whole month (720 h × 14 = 10080) is capped at 9900.
        let l = rate(&[server("a", 14, 9900, p.start - 100, None)], p, p.end);
        assert_eq!((l[0].seconds, l[0].amount), (30 * 86_400, 9900));
        // The second in progress counts: the live bill at `t` uses upto = t + 1.
        let l = rate(&[server("a", 3600, 9900, p.start, None)], p, p.start + 1);
        assert_eq!((l[0].seconds, l[0].amount), (1, 1));
    }

    #[test]
    fn a_resize_switches_rates_and_keeps_the_highest_cap() {
        let p = Month { year: 2026, month: 11 }.period(&seoul());
        let r = p.start + 3600;
        let ivs = [
            server("a", 3600, 1_000_000, p.start, Some(r)),
            Interval { name: "renamed".into(), ..server("a", 7200, 2_000_000, r, None) },
        ];
        let l = rate(&ivs, p, r + 10);
        assert_eq!((l[0].seconds, l[0].amount, l[0].rate, l[0].name.as_str()), (3610, 3600 + 20, 7200, "renamed"));
        // Downsized: the cap stays the highest one charged this month.
        let ivs = [server("a", 100_000, 50_000, p.start, Some(r)), server("a", 1, 10, r, None)];
        assert_eq!(rate(&ivs, p, p.end)[0].amount, 50_000);
    }

    #[test]
    fn volumes_are_pro_rated_by_the_second_of_their_month() {
        let p = Month { year: 2026, month: 2 }.period(&seoul());
        let v = |start, end| Interval {
            resource_id: "v".into(),
            kind: Kind::Volume,
            name: "v".into(),
            hourly: 0,
            monthly: 1500,
            start,
            end,
        };
        assert_eq!(rate(&[v(p.start - 5, None)], p, p.end)[0].amount, 1500);
        // Half of February: exactly half the price.
        assert_eq!(rate(&[v(p.start, Some(p.start + 14 * 86_400))], p, p.end)[0].amount, 750);
        // One second: floor(1500 / 2419200) = 0, but the line is there.
        let l = rate(&[v(p.start, Some(p.start + 1))], p, p.end);
        assert_eq!((l[0].seconds, l[0].amount), (1, 0));
    }

    #[test]
    fn lines_are_ordered_and_grouped() {
        let p = Month { year: 2026, month: 11 }.period(&seoul());
        let ivs = [
            Interval { kind: Kind::Volume, ..server("b", 0, 3000, p.start, None) },
            server("c", 14, 9900, p.start, None),
            server("a", 14, 9900, p.end, None),
            server("d", 14, 9900, p.start - 10, Some(p.start)),
        ];
        let l = rate(&ivs, p, p.end);
        let ids: Vec<&str> = l.iter().map(|l| l.resource_id.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
        let g = groups(&l);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].kind.group_name(), g[0].sub_total), ("서버", 9900));
        assert_eq!((g[1].kind.group_name(), g[1].sub_total), ("블록 스토리지", 3000));
        assert_eq!(total(&l), 12_900);
        assert_eq!(vat(12_905), 1290);
    }
}
