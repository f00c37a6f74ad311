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

    /// One page of `table`'s rows matching `filter`, read forward in `(created_at, id_column)`
    /// order whatever their total (for pages near the start).
    pub(crate) async fn page_forward<R>(
        &self,
        table: &str,
        columns: &str,
        id_column: &str,
        filter: &Filter,
        page: PageQuery,
    ) -> Result<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
    {
        let n = filter.params.len();
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {} ORDER BY created_at, {id_column} LIMIT ${} OFFSET ${}",
            filter.sql(),
            n + 1,
            n + 2
        );
        Ok(filter.bind(sqlx::query_as::<_, R>(&sql)).bind(page.limit).bind(page.offset).fetch_all(self.pool()).await?)
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
        if page.offset >= total || page.limit <= 0 {
            return Ok(Vec::new());
        }
        let from_end = page.offset > total / 2;
        let (order, limit, offset) = if from_end {
            // `offset < total` here, so neither difference can overflow.
            let remaining = total - page.offset;
            (
                format!("created_at DESC, {id_column} DESC"),
                remaining.min(page.limit),
                remaining.saturating_sub(page.limit).max(0),
            )
        } else {
            (format!("created_at, {id_column}"), page.limit, page.offset)
        };
        let n = filter.params.len();
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {} ORDER BY {order} LIMIT ${} OFFSET ${}",
            filter.sql(),
            n + 1,
            n + 2
        );
        let mut rows =
            filter.bind(sqlx::query_as::<_, R>(&sql)).bind(limit).bind(offset).fetch_all(self.pool()).await?;
        if from_end {
            rows.reverse();
        }
        Ok(rows)
    }
}
