//! Printing answers in the format `--output` asks for (hcloud and doctl are the anchors):
//!
//! - `table` (the default): aligned columns under a header, fitted to the terminal's width. Ids
//!   and other short values never wrap or shrink; only the columns of free text (names,
//!   descriptions, fingerprints) are cut, with `…`. A width of 0 or no terminal means no limit.
//! - `plain`: the same cells separated by one tab, never cut, for `cut` and `awk`.
//! - `csv`: RFC 4180, never cut.
//! - `ids`: the first column (the id) of each row, one per line.
//! - `json` (also `--json`) and `yaml`: the `result` rows as the server sent them.
//!
//! `--columns a,b,c` picks and orders the columns of `table`, `plain`, `csv` and `ids`;
//! `--no-header` drops their header line. Each row type says which columns it has by
//! implementing [`Tabular`].
//!
//! With `json` and `yaml` the clients keep every answer as the server sent it (a [`RawLog`]), and
//! what is printed is the `result` of the answers received since the last print, not the typed
//! rows serialized again: fields the wire types do not model are never dropped.

use std::io::{IsTerminal, Write};
use std::sync::LazyLock;

use anyhow::bail;
use clap::{Args, ValueEnum};
use openwinv_sdk::{AdminClient, Client, Page, RawLog};
use serde::Serialize;
use serde_json::Value;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The answers of this process's clients, kept with `json` and `yaml` output.
static ANSWERS: LazyLock<RawLog> = LazyLock::new(RawLog::new);

/// What separates two table columns.
const GAP: &str = "   ";
/// A text column is not cut narrower than this, however narrow the terminal.
const MIN_TEXT_WIDTH: usize = 8;
/// What ends a cut value.
const ELLIPSIS: char = '…';

/// How a column's values look, which decides how the table treats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Ids, statuses, dates: never cut, never wrapped.
    Short,
    /// Free text (names, descriptions): cut with `…` when the table is too wide.
    Long,
    /// Right-aligned, never cut.
    Number,
}

/// One table column: a title and the kind of its values.
#[derive(Debug)]
pub struct Column {
    pub title: &'static str,
    kind: Kind,
}

/// A column of short values (ids, statuses, dates) that is never cut.
pub const fn text(title: &'static str) -> Column {
    Column { title, kind: Kind::Short }
}

/// A column of free text, cut with `…` to fit the terminal.
pub const fn long(title: &'static str) -> Column {
    Column { title, kind: Kind::Long }
}

/// A right-aligned column of numbers.
pub const fn number(title: &'static str) -> Column {
    Column { title, kind: Kind::Number }
}

/// A row type that can be shown as a table line and as a detail view.
pub trait Tabular: Serialize {
    const COLUMNS: &'static [Column];

    /// One cell per column.
    fn cells(&self) -> Vec<String>;

    /// Label and value pairs of the detail view; by default the table columns.
    fn details(&self) -> Vec<(&'static str, String)> {
        Self::COLUMNS.iter().map(|c| c.title).zip(self.cells()).collect()
    }
}

/// The formats of `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns fitted to the terminal (ids never wrap; long text is cut with …)
    Table,
    /// Tab-separated cells, never cut
    Plain,
    /// The server's rows as a JSON array
    Json,
    /// The server's rows as YAML
    Yaml,
    /// Comma-separated values (RFC 4180), never cut
    Csv,
    /// The id of each row, one per line
    Ids,
}

/// The global output options.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// How to print the result
    ///
    /// Lists fetch every page in every format but `table`, unless --page or --page-size asks
    /// for one.
    #[arg(long, short = 'o', global = true, value_enum, value_name = "FORMAT", help_heading = "Output options")]
    output: Option<Format>,
    /// The same as --output json
    #[arg(long, global = true, help_heading = "Output options")]
    json: bool,
    /// Only these columns, in this order (table, plain, csv, ids): titles as in the header, in
    /// any case, `_` or `-` for a space, e.g. id,name,public_ip
    #[arg(long, global = true, value_delimiter = ',', value_name = "A,B,C", help_heading = "Output options")]
    columns: Vec<String>,
    /// Leave out the header line (table, plain, csv)
    #[arg(long, global = true, help_heading = "Output options")]
    no_header: bool,
}

/// How the command prints.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: Format,
    /// `--columns`, normalized; empty for all.
    columns: &'static [String],
    no_header: bool,
    /// The terminal's width, when there is one that reports a width.
    width: Option<usize>,
}

impl OutputArgs {
    /// Whether `--json` or `--output json` was given, read before the options are checked (an
    /// error then is printed as JSON too).
    pub fn wants_json(&self) -> bool {
        self.json || self.output == Some(Format::Json)
    }
}

impl Output {
    pub fn new(args: &OutputArgs) -> anyhow::Result<Output> {
        let format = match (args.json, args.output) {
            (true, Some(f)) if f != Format::Json => bail!("--json and --output ask for two formats: pick one"),
            (true, _) => Format::Json,
            (false, f) => f.unwrap_or(Format::Table),
        };
        let columns: Vec<String> = args.columns.iter().map(|c| normalized(c)).filter(|c| !c.is_empty()).collect();
        if !columns.is_empty() && matches!(format, Format::Json | Format::Yaml) {
            bail!("--columns applies to the table, plain, csv and ids formats, not to --output json or yaml");
        }
        Ok(Output { format, columns: Vec::leak(columns), no_header: args.no_header, width: terminal_width() })
    }

    /// An output for the unit tests.
    #[cfg(test)]
    fn with(format: Format, columns: &[&str], width: Option<usize>) -> Output {
        let columns: Vec<String> = columns.iter().map(|c| normalized(c)).collect();
        Output { format, columns: Vec::leak(columns), no_header: false, width }
    }

    /// Whether the output is for programs (anything but the table): notes stay off stdout, and
    /// lists fetch every page unless one is asked for.
    pub fn machine(&self) -> bool {
        self.format != Format::Table
    }

    /// Whether the server's own rows are printed (json, yaml).
    fn raw(&self) -> bool {
        matches!(self.format, Format::Json | Format::Yaml)
    }

    /// The client, keeping its answers for printing when the output is the server's rows.
    pub fn client(&self, client: Client) -> Client {
        if self.raw() { client.with_raw_log(ANSWERS.clone()) } else { client }
    }

    /// The operator client, keeping its answers for printing when the output is the server's rows.
    pub fn admin_client(&self, admin: AdminClient) -> AdminClient {
        if self.raw() { admin.with_raw_log(ANSWERS.clone()) } else { admin }
    }

    /// Forgets the answers received so far (polls while waiting), so that the next print shows
    /// only what comes after.
    pub fn forget_answers(&self) {
        forget_answers();
    }

    /// Rows in the chosen format.
    pub fn list<T: Tabular>(&self, rows: &[T]) -> anyhow::Result<()> {
        if self.raw() {
            return self.print_rows(rows);
        }
        let (columns, picked) = self.pick(T::COLUMNS)?;
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                let all = row.cells();
                picked.iter().map(|&i| all.get(i).cloned().unwrap_or_default()).collect()
            })
            .collect();
        let header = !self.no_header;
        let text = match self.format {
            Format::Table => {
                let (text, dropped) = table(&columns, &cells, header, self.width, self.columns.is_empty());
                if !dropped.is_empty() {
                    let names: Vec<String> = dropped.iter().map(|t| normalized(t)).collect();
                    eprintln!(
                        "(left out to fit {} columns: {}; --columns or --output plain shows them)",
                        self.width.unwrap_or_default(),
                        names.join(",")
                    );
                }
                text
            }
            Format::Plain => separated(&columns, &cells, header, "\t", |c| c.replace(['\t', '\n'], " ")),
            Format::Csv => separated(&columns, &cells, header, ",", csv_field),
            Format::Ids => cells.iter().map(|row| format!("{}\n", row.first().map_or("", |c| c.as_str()))).collect(),
            Format::Json | Format::Yaml => unreachable!("printed above"),
        };
        emit(&text)
    }

    /// A page of rows; when there are more pages, a line on stderr says where this one is.
    pub fn page<T: Tabular>(&self, page: &Page<T>) -> anyhow::Result<()> {
        self.list(&page.rows)?;
        match page.total {
            Some(total) => {
                let pages = total.div_ceil(page.page_size.max(1));
                if pages > 1 {
                    let more = if page.page_no < pages {
                        format!("; --page {} for more, --all for every row", page.page_no + 1)
                    } else {
                        String::new()
                    };
                    eprintln!("page {} of {pages}, {total} rows{more}", page.page_no);
                }
            }
            // Lists without `total` (SSH keys, firewalls, bills): a full page may have a next one.
            None if page.rows.len() as u64 >= page.page_size.max(1) => {
                eprintln!("page {}; --page {} may have more, --all for every row", page.page_no, page.page_no + 1)
            }
            None => {}
        }
        Ok(())
    }

    /// One row: a detail view in a table (or a one-row table with `--columns`), the row in the
    /// other formats (a JSON array of that row, as `result` is).
    pub fn record<T: Tabular>(&self, row: &T) -> anyhow::Result<()> {
        if self.format != Format::Table || !self.columns.is_empty() {
            return self.list(std::slice::from_ref(row));
        }
        emit(&details(&row.details()))
    }

    /// The columns `--columns` picked (all without it) and their indexes in the row's cells.
    fn pick<'c>(&self, all: &'c [Column]) -> anyhow::Result<(Vec<&'c Column>, Vec<usize>)> {
        if self.columns.is_empty() {
            return Ok((all.iter().collect(), (0..all.len()).collect()));
        }
        let mut picked = Vec::new();
        for wanted in self.columns {
            match all.iter().position(|c| normalized(c.title) == *wanted) {
                Some(i) => picked.push(i),
                None => {
                    let names: Vec<String> = all.iter().map(|c| normalized(c.title)).collect();
                    bail!("--columns: there is no column `{wanted}` here; the columns are {}", names.join(","))
                }
            }
        }
        Ok((picked.iter().map(|&i| &all[i]).collect(), picked))
    }

    /// The rows of the answers received since the last print, as sent; the typed rows when the
    /// clients kept none (a row made here, not received).
    fn print_rows<T: Serialize>(&self, rows: &[T]) -> anyhow::Result<()> {
        let value = match ANSWERS.take_rows() {
            Some(raw) => Value::Array(raw),
            None => serde_json::to_value(rows)?,
        };
        match self.format {
            Format::Yaml => emit(&yaml(&value)),
            _ => print_json(&value),
        }
    }
}

/// Forgets the answers received so far (see [`Output::forget_answers`]).
pub fn forget_answers() {
    ANSWERS.clear();
}

/// A column title or a `--columns` item as compared: lower case, `_` for spaces and dashes.
fn normalized(title: &str) -> String {
    title.trim().to_lowercase().replace([' ', '-'], "_")
}

/// `COLUMNS` when set to a positive number, else the width of the terminal on stdout; `None`
/// (no limit) when stdout is not a terminal or the terminal reports a width of 0.
fn terminal_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<usize>().ok()) {
        return (columns > 0).then_some(columns);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let (_, columns) = console::Term::stdout().size_checked()?;
    (columns > 0).then_some(usize::from(columns))
}

/// Cells as one line each, without line breaks.
fn one_line(cell: &str) -> String {
    if cell.contains(['\n', '\r', '\t']) { cell.replace(['\r', '\n', '\t'], " ") } else { cell.to_owned() }
}

/// The aligned table, and the titles of the columns left out to fit. Every column is as wide
/// as its widest value; when the line is wider than `width`:
/// 1. with `may_drop` (no `--columns`), columns are left out from the right (never the first
///    one, the id) until the line fits with its text columns at [`MIN_TEXT_WIDTH`];
/// 2. the widest text columns are narrowed one character at a time, their values cut with `…`.
///
/// Ids and other short values are never cut; a line may thus stay wider than a very narrow
/// terminal, which then wraps it whole, ids intact.
fn table(
    columns: &[&Column],
    rows: &[Vec<String>],
    header: bool,
    width: Option<usize>,
    may_drop: bool,
) -> (String, Vec<&'static str>) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| one_line(c)).collect()).collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| if header { c.title.width() } else { 0 }).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.width());
        }
    }
    let mut shown: Vec<usize> = (0..columns.len()).collect();
    let mut dropped = Vec::new();
    if let Some(limit) = width {
        let line_width = |shown: &[usize], widths: &dyn Fn(usize) -> usize| {
            shown.iter().map(|&i| widths(i)).sum::<usize>() + GAP.len() * shown.len().saturating_sub(1)
        };
        let narrowest = |i: usize| {
            if columns[i].kind == Kind::Long { widths[i].min(MIN_TEXT_WIDTH) } else { widths[i] }
        };
        while may_drop && shown.len() > 1 && line_width(&shown, &narrowest) > limit {
            if let Some(i) = shown.pop() {
                dropped.insert(0, columns[i].title);
            }
        }
        let mut total = line_width(&shown, &|i| widths[i]);
        while total > limit {
            let widest = shown
                .iter()
                .copied()
                .filter(|&i| columns[i].kind == Kind::Long && widths[i] > MIN_TEXT_WIDTH)
                .max_by_key(|&i| widths[i]);
            let Some(i) = widest else { break };
            widths[i] -= 1;
            total -= 1;
        }
    }
    let mut text = String::new();
    let mut line = |cells: &[&str]| {
        let mut out = String::new();
        for (n, &i) in shown.iter().enumerate() {
            if n > 0 {
                out.push_str(GAP);
            }
            let cell = cut(cells.get(i).copied().unwrap_or(""), widths[i]);
            let pad = " ".repeat(widths[i].saturating_sub(cell.width()));
            if columns[i].kind == Kind::Number {
                out.push_str(&pad);
                out.push_str(&cell);
            } else {
                out.push_str(&cell);
                out.push_str(&pad);
            }
        }
        text.push_str(out.trim_end());
        text.push('\n');
    };
    if header {
        line(&columns.iter().map(|c| c.title).collect::<Vec<_>>());
    }
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    (text, dropped)
}

/// `value` cut to `width` display columns, ending with `…` when cut.
fn cut(value: &str, width: usize) -> String {
    if value.width() <= width {
        return value.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in value.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push(ELLIPSIS);
    out
}

/// Header and rows with `separator` between the cells, each cell written by `field`.
fn separated(
    columns: &[&Column],
    rows: &[Vec<String>],
    header: bool,
    separator: &str,
    field: impl Fn(&str) -> String,
) -> String {
    let mut text = String::new();
    let titles = header.then(|| columns.iter().map(|c| c.title.to_owned()).collect::<Vec<_>>());
    for row in titles.iter().chain(rows) {
        let cells: Vec<String> = row.iter().map(|c| field(c)).collect();
        text.push_str(&cells.join(separator));
        text.push('\n');
    }
    text
}

/// A CSV field, quoted when it holds a comma, a quote, a line break or edge spaces.
fn csv_field(cell: &str) -> String {
    let quote = cell.contains([',', '"', '\n', '\r']) || cell.starts_with(' ') || cell.ends_with(' ');
    if quote { format!("\"{}\"", cell.replace('"', "\"\"")) } else { cell.to_owned() }
}

/// The detail view: labels in one column, values beside them; the lines of a value of several
/// lines under each other.
fn details(pairs: &[(&str, String)]) -> String {
    let label_width = pairs.iter().map(|(l, _)| l.width() + 1).max().unwrap_or(0);
    let mut text = String::new();
    for (label, value) in pairs {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or("");
        let label = format!("{label}:");
        text.push_str(format!("{label:<label_width$}{GAP}{first}").trim_end());
        text.push('\n');
        for more in lines {
            text.push_str(format!("{:label_width$}{GAP}{more}", "").trim_end());
            text.push('\n');
        }
    }
    text
}

/// A JSON value as YAML (block style). Strings are always double-quoted with JSON's escapes,
/// which YAML's double-quoted scalars share, so no value is ever read back as another type.
fn yaml(value: &Value) -> String {
    let lines = yaml_lines(value);
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn yaml_lines(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .flat_map(|item| {
                yaml_lines(item)
                    .into_iter()
                    .enumerate()
                    .map(|(i, line)| if i == 0 { format!("- {line}") } else { format!("  {line}") })
            })
            .collect(),
        Value::Object(map) if !map.is_empty() => map
            .iter()
            .flat_map(|(key, v)| {
                let key = yaml_key(key);
                if is_block(v) {
                    let mut lines = vec![format!("{key}:")];
                    lines.extend(yaml_lines(v).into_iter().map(|l| format!("  {l}")));
                    lines
                } else {
                    vec![format!("{key}: {}", yaml_scalar(v))]
                }
            })
            .collect(),
        other => vec![yaml_scalar(other)],
    }
}

/// Whether a value is written as an indented block (a non-empty array or object).
fn is_block(value: &Value) -> bool {
    match value {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => false,
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
        // A JSON string literal is a valid YAML double-quoted scalar.
        other => other.to_string(),
    }
}

/// Keys that are plain identifiers stay bare, except words YAML 1.1 reads as booleans or null.
fn yaml_key(key: &str) -> String {
    const RESERVED: [&str; 11] = ["true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", ""];
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&key.to_ascii_lowercase().as_str());
    if plain { key.to_owned() } else { Value::String(key.to_owned()).to_string() }
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Writes to stdout; a closed pipe (`| head`) surfaces as an error the caller treats as success.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Integer won with thousands separators: `₩9,900`.
pub fn won(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(d);
    }
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}₩{grouped}")
}

/// A list as `a, b, c`, or `-` when empty.
pub fn joined(items: &[String]) -> String {
    if items.is_empty() { "-".into() } else { items.join(", ") }
}

/// An optional value, `-` when absent.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn won_groups_thousands() {
        assert_eq!(won(0), "₩0");
        assert_eq!(won(14), "₩14");
        assert_eq!(won(9900), "₩9,900");
        assert_eq!(won(1_234_567), "₩1,234,567");
        assert_eq!(won(-100_000), "-₩100,000");
    }

    #[test]
    fn lists_and_options_have_a_placeholder() {
        assert_eq!(joined(&[]), "-");
        assert_eq!(joined(&["a".into(), "b".into()]), "a, b");
        assert_eq!(or_dash(None::<u32>), "-");
        assert_eq!(or_dash(Some(3)), "3");
    }

    const COLUMNS: [Column; 4] = [text("ID"), long("NAME"), text("STATUS"), number("SIZE")];

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec![
                "INSTANCE-0123456789abcdef".into(),
                "a rather long name for a web server".into(),
                "active".into(),
                "9".into(),
            ],
            vec!["INSTANCE-2".into(), "서울 web".into(), "off".into(), "120".into()],
        ]
    }

    #[test]
    fn tables_fit_by_cutting_text_never_ids() {
        let columns: Vec<&Column> = COLUMNS.iter().collect();
        let (wide, dropped) = table(&columns, &rows(), true, None, true);
        assert!(wide.contains("a rather long name for a web server") && dropped.is_empty(), "{wide}");
        let (narrow, dropped) = table(&columns, &rows(), true, Some(60), true);
        for line in narrow.lines() {
            assert!(line.width() <= 60, "{line:?} is wider than 60:\n{narrow}");
        }
        assert!(dropped.is_empty(), "cutting the text is enough: {dropped:?}");
        assert!(narrow.contains("INSTANCE-0123456789abcdef"), "{narrow}");
        assert!(narrow.contains('…'), "{narrow}");
        assert!(narrow.lines().nth(2).unwrap().ends_with("120"), "numbers are right-aligned:\n{narrow}");
        // Narrower: columns are left out from the right, then the text is cut.
        let (fewer, dropped) = table(&columns, &rows(), true, Some(40), true);
        assert_eq!(dropped, ["STATUS", "SIZE"]);
        assert!(fewer.lines().all(|l| l.width() <= 40) && fewer.contains("INSTANCE-0123456789abcdef"), "{fewer}");
        // Chosen columns stay, whatever the width; ids stay whole.
        let (tiny, dropped) = table(&columns, &rows(), true, Some(10), false);
        assert!(dropped.is_empty() && tiny.contains("INSTANCE-0123456789abcdef"), "{tiny}");
        assert_eq!(tiny.lines().count(), 3);
    }

    #[test]
    fn cutting_counts_display_columns() {
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("서울서울", 5), "서울…");
    }

    #[test]
    fn plain_and_csv_are_never_cut() {
        let columns: Vec<&Column> = COLUMNS.iter().collect();
        let mut rows = rows();
        rows[1][1] = "say \"hi\", web".into();
        let csv = separated(&columns, &rows, true, ",", csv_field);
        assert_eq!(csv.lines().next(), Some("ID,NAME,STATUS,SIZE"));
        assert!(csv.contains("INSTANCE-2,\"say \"\"hi\"\", web\",off,120"), "{csv}");
        let plain = separated(&columns, &rows, false, "\t", str::to_owned);
        assert!(plain.starts_with("INSTANCE-0123456789abcdef\ta rather long name"), "{plain}");
    }

    #[test]
    fn columns_are_picked_by_title_in_any_spelling() {
        let all = [text("ID"), text("PUBLIC IP"), long("NAME")];
        let out = Output::with(Format::Plain, &["name", "Public-IP"], None);
        let (_, picked) = out.pick(&all).unwrap();
        assert_eq!(picked, [2, 1]);
        let err = Output::with(Format::Plain, &["nope"], None).pick(&all).unwrap_err().to_string();
        assert!(err.contains("`nope`") && err.contains("id,public_ip,name"), "{err}");
    }

    #[test]
    fn yaml_keeps_types_and_nesting() {
        let value = json!([{"id": "I-1", "count": 2, "on": true, "no": null, "ip": [{"a": "1"}], "empty": [],
                            "text": "line\n\"two\"", "num_as_text": "10"}]);
        let text = yaml(&value);
        assert_eq!(
            text,
            "- id: \"I-1\"\n  count: 2\n  \"on\": true\n  \"no\": null\n  ip:\n    - a: \"1\"\n  empty: []\n  \
             text: \"line\\n\\\"two\\\"\"\n  num_as_text: \"10\"\n"
        );
        assert_eq!(yaml(&json!([])), "[]\n");
    }

    #[test]
    fn details_align_labels_and_indent_more_lines() {
        let text = details(&[("ID", "S-1".into()), ("CONTENT", "#!/bin/sh\necho hi".into())]);
        assert_eq!(text, "ID:        S-1\nCONTENT:   #!/bin/sh\n           echo hi\n");
    }
}
