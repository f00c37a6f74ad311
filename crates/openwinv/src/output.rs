//! Printing answers: the `result` rows as pretty JSON with `--json`, tables otherwise. Each row
//! type says which columns it shows by implementing [`Tabular`].
//!
//! With `--json` the clients keep every answer as the server sent it (a [`RawLog`]), and what is
//! printed is the `result` of the answers received since the last print, not the typed rows
//! serialized again: fields the wire types do not model are never dropped.

use std::io::Write;
use std::sync::LazyLock;

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use openwinv_sdk::{AdminClient, Client, Page, RawLog};
use serde::Serialize;

/// The answers of this process's clients, kept with `--json`.
static ANSWERS: LazyLock<RawLog> = LazyLock::new(RawLog::new);

/// One table column: a title, right-aligned when it holds numbers.
pub struct Column {
    pub title: &'static str,
    pub numeric: bool,
}

pub const fn text(title: &'static str) -> Column {
    Column { title, numeric: false }
}

pub const fn number(title: &'static str) -> Column {
    Column { title, numeric: true }
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

/// How the command prints.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// The client, keeping its answers for printing when the output is JSON.
    pub fn client(&self, client: Client) -> Client {
        if self.json { client.with_raw_log(ANSWERS.clone()) } else { client }
    }

    /// The operator client, keeping its answers for printing when the output is JSON.
    pub fn admin_client(&self, admin: AdminClient) -> AdminClient {
        if self.json { admin.with_raw_log(ANSWERS.clone()) } else { admin }
    }

    /// Forgets the answers received so far (polls while waiting), so that the next print shows
    /// only what comes after.
    pub fn forget_answers(&self) {
        ANSWERS.clear();
    }

    /// Rows as a table, or the JSON array.
    pub fn list<T: Tabular>(&self, rows: &[T]) -> anyhow::Result<()> {
        if self.json {
            return print_rows(rows);
        }
        let mut table = new_table();
        table.set_header(T::COLUMNS.iter().map(|c| c.title));
        for row in rows {
            table.add_row(row.cells());
        }
        for (i, c) in T::COLUMNS.iter().enumerate() {
            if c.numeric
                && let Some(column) = table.column_mut(i)
            {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        emit(&format!("{table}\n"))
    }

    /// A page of rows, with a line saying where it is when there are more pages.
    pub fn page<T: Tabular>(&self, page: &Page<T>) -> anyhow::Result<()> {
        self.list(&page.rows)?;
        if self.json {
            return Ok(());
        }
        match page.total {
            Some(total) => {
                let pages = total.div_ceil(page.page_size.max(1));
                if pages > 1 {
                    let more = if page.page_no < pages {
                        format!("; --page {} for more, --all for every row", page.page_no + 1)
                    } else {
                        String::new()
                    };
                    emit(&format!("page {} of {pages}, {total} rows{more}\n", page.page_no))?;
                }
            }
            // Lists without `total` (SSH keys, firewalls, bills): a full page may have a next one.
            None if page.rows.len() as u64 >= page.page_size.max(1) => emit(&format!(
                "page {}; --page {} may have more, --all for every row\n",
                page.page_no,
                page.page_no + 1
            ))?,
            None => {}
        }
        Ok(())
    }

    /// One row: a two-column detail view, or a JSON array of that row (as `result` is).
    pub fn record<T: Tabular>(&self, row: &T) -> anyhow::Result<()> {
        if self.json {
            return print_rows(std::slice::from_ref(row));
        }
        let mut table = new_table();
        for (label, value) in row.details() {
            table.add_row(vec![label.to_owned(), value]);
        }
        emit(&format!("{table}\n"))
    }
}

fn new_table() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// The rows of the answers received since the last print, as sent; the typed rows when the
/// clients kept none (a row made here, not received).
fn print_rows<T: Serialize>(rows: &[T]) -> anyhow::Result<()> {
    match ANSWERS.take_rows() {
        Some(raw) => print_json(&raw),
        None => print_json(rows),
    }
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
}
