//! Filtered, paginated lists of an account's rows (instances, volumes): the `WHERE` clause built
//! with its parameters, the total, and the page read from whichever end of the order is nearer.

use sqlx::any::AnyRow;

use crate::{PageQuery, Result, Store};

/// A parameter of a built query, bound in order.
enum Param {
    Text(String),
    Int(i64),
}

/// `account_id = $1 AND …` with its parameters.
pub(crate) struct Filter {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Filter {
    pub(crate) fn for_account(account_id: &str) -> Filter {
        Filter { clauses: vec!["account_id = $1".to_owned()], params: vec![Param::Text(account_id.to_owned())] }
    }

    /// Whether only the account is filtered on.
    pub(crate) fn is_account_only(&self) -> bool {
        self.clauses.len() == 1
    }

    fn placeholder(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    /// Adds `clause` with each `?` standing for the next of `values`.
    pub(crate) fn text(&mut self, clause: &str, values: impl IntoIterator<Item = String>) {
        let mut values = values.into_iter();
        let mut out = String::new();
        for (i, part) in clause.split('?').enumerate() {
            if i > 0 {
                let v = values.next().expect("one value per `?`");
                out.push_str(&self.placeholder(Param::Text(v)));
            }
            out.push_str(part);
        }
        self.clauses.push(out);
    }

    /// `column IN ($a, $b, …)`.
    pub(crate) fn text_in(&mut self, column: &str, values: &[String]) {
        let ps: Vec<String> = values.iter().map(|v| self.placeholder(Param::Text(v.clone()))).collect();
        self.clauses.push(format!("{column} IN ({})", ps.join(", ")));
    }

    /// `(a OR b OR …)` over `(lo, hi)` ranges; `clause` names them `{lo}` and `{hi}`.
    pub(crate) fn int_ranges(&mut self, clause: &str, ranges: &[(i64, i64)]) {
        let parts: Vec<String> = ranges
            .iter()
            .map(|(lo, hi)| {
                let (a, b) = (self.placeholder(Param::Int(*lo)), self.placeholder(Param::Int(*hi)));
                clause.replace("{lo}", &a).replace("{hi}", &b)
            })
            .collect();
        self.clauses.push(format!("({})", parts.join(" OR ")));
    }

    fn sql(&self) -> String {
        self.clauses.join(" AND ")
    }

    fn bind<'q, O>(
        &'q self,
        mut q: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
        for p in &self.params {
            q = match p {
                Param::Text(t) => q.bind(t.as_str()),
                Param::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

impl Store {
    /// `COUNT(*)` of `table`'s rows matching `filter`.
    pub(crate) async fn count_rows(&self, table: &str, filter: &Filter) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {}", filter.sql());
        let (n,) = filter.bind(sqlx::query_as::<_, (i64,)>(&sql)).fetch_one(self.pool()).await?;
        Ok(n)
    }

    /// One page of `table`'s rows matching `filter`, in `(created_at, id_column)` order, of
    /// `total` such rows. Pages past the middle are read from the far end in reverse, so that the
    /// last page costs what the first one does.
    pub(crate) async fn page_of<R>(
        &self,
        table: &str,
        columns: &str,
        id_column: &str,
        filter: &Filter,
        total: i64,
        page: PageQuery,
    ) -> Result<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
    {
        let Some(w) = Window::of(id_column, Some(total), page) else { return Ok(Vec::new()) };
        let sql = w.select(table, columns, filter);
        let mut rows =
            filter.bind(sqlx::query_as::<_, R>(&sql)).bind(w.limit).bind(w.offset).fetch_all(self.pool()).await?;
        if w.reversed {
            rows.reverse();
        }
        Ok(rows)
    }

    /// The same page as [`Store::page_of`] (or, with no `total`, read forward from the start
    /// whatever the total), as **one value**: a JSON array of objects keyed by `names` (the
    /// names of `columns`' values, in any order), in `(created_at, id_column)` order; `None` for
    /// an empty page. The database builds the JSON, so the driver moves one value instead of
    /// every column of every row (a row at a time through the SQLite driver's worker thread,
    /// each value copied and converted): most of a list page's CPU before (docs/perf.md).
    pub(crate) async fn page_as_json(
        &self,
        rows: &JsonRows<'_>,
        filter: &Filter,
        total: Option<i64>,
        page: PageQuery,
    ) -> Result<Option<String>> {
        let JsonRows { table, columns, names, id_column } = *rows;
        let Some(w) = Window::of(id_column, total, page) else { return Ok(None) };
        // The window's ids first, then `columns` of those rows alone: the correlated subqueries
        // `columns` may hold (an instance's volumes and firewalls) run for the page's rows, not
        // for every row its `OFFSET` skips as well (a page read 87 rows from the far end ran
        // them 97 times: docs/perf.md). On PostgreSQL the ids are an array that the primary
        // key is searched for: a generic plan of `IN (…)` or of a window in a subquery is a
        // sequential scan and a sort of the account's rows, since it cannot know `LIMIT`.
        let window = w.select(table, id_column, filter);
        let pairs: Vec<String> = names.iter().map(|n| format!("'{n}', t.{n}")).collect();
        let order = format!("t.created_at, t.{id_column}");
        let sql = match self.backend() {
            crate::Backend::Sqlite => {
                let inner = format!("SELECT {columns} FROM {table} WHERE {id_column} IN ({window})");
                format!(
                    "SELECT CASE WHEN COUNT(*) = 0 THEN NULL ELSE json_group_array(json_object({}) ORDER BY {order}) END \
                     FROM ({inner}) AS t",
                    pairs.join(", ")
                )
            }
            crate::Backend::Postgres => {
                let inner = format!("SELECT {columns} FROM {table} WHERE {id_column} = ANY(ARRAY({window}))");
                format!(
                    "SELECT CAST(json_agg(json_build_object({}) ORDER BY {order}) AS TEXT) FROM ({inner}) AS t",
                    pairs.join(", ")
                )
            }
        };
        let (json,): (Option<String>,) =
            filter.bind(sqlx::query_as(&sql)).bind(w.limit).bind(w.offset).fetch_one(self.pool()).await?;
        Ok(json)
    }
}

/// What a page read as JSON is made of: `table`'s `columns` (SQL), the names of their values
/// (the JSON keys), and the id column that orders rows of one creation time.
#[derive(Clone, Copy)]
pub(crate) struct JsonRows<'a> {
    pub table: &'a str,
    pub columns: &'a str,
    pub names: &'a [&'a str],
    pub id_column: &'a str,
}

/// Where a page is read: the order, `LIMIT` and `OFFSET` of its statement.
struct Window {
    order: String,
    limit: i64,
    offset: i64,
    /// Read from the far end: the rows come newest first.
    reversed: bool,
}

impl Window {
    /// `None`: the page is empty without reading (past the end, or no rows asked for). Without a
    /// total the page is read forward.
    fn of(id_column: &str, total: Option<i64>, page: PageQuery) -> Option<Window> {
        if page.limit <= 0 {
            return None;
        }
        let Some(total) = total else {
            return Some(Window {
                order: format!("created_at, {id_column}"),
                limit: page.limit,
                offset: page.offset,
                reversed: false,
            });
        };
        if page.offset >= total {
            return None;
        }
        Some(if page.offset > total / 2 {
            // `offset < total` here, so neither difference can overflow.
            let remaining = total - page.offset;
            Window {
                order: format!("created_at DESC, {id_column} DESC"),
                limit: remaining.min(page.limit),
                offset: remaining.saturating_sub(page.limit).max(0),
                reversed: true,
            }
        } else {
            Window {
                order: format!("created_at, {id_column}"),
                limit: page.limit,
                offset: page.offset,
                reversed: false,
            }
        })
    }

    /// The page's `SELECT`; its last two parameters are the limit and the offset.
    fn select(&self, table: &str, columns: &str, filter: &Filter) -> String {
        let n = filter.params.len();
        format!(
            "SELECT {columns} FROM {table} WHERE {} ORDER BY {} LIMIT ${} OFFSET ${}",
            filter.sql(),
            self.order,
            n + 1,
            n + 2
        )
    }
}
