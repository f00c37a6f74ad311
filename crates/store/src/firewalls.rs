//! Firewalls (security groups), their rules and their attachments to instances.
//!
//! Every change is one transaction that first takes the firewall's row lock (an `UPDATE` of its
//! row: a row lock on PostgreSQL, the write lock on SQLite), so that concurrent rule changes,
//! attaches and deletes of one firewall serialize and the limits and the duplicate check hold.
//! An attach also locks the instance row, in that order (firewall, then instance); nothing locks
//! them the other way round.
//!
//! Rule ids are integers from a per-firewall counter (`next_rule_id`), never reused within a
//! firewall. Attachments reference the instance with `ON DELETE CASCADE`, so removing an instance
//! row also removes its attachments; [`Store::detach_all`] does it explicitly.
//!
//! Here: the records, the shared locks and helpers, and the firewall itself; one rule's changes
//! in `rules.rs`; attachments to instances in `attachments.rs`.

mod attachments;
mod rules;

pub use self::attachments::insert_attachment;

use crate::ids::FirewallId;
use crate::operations::{NewOperation, insert_operation};
use crate::records::InstanceStatus;
use crate::{PageQuery, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FirewallRecord {
    pub firewall_id: FirewallId,
    pub account_id: crate::ids::AccountId,
    pub title: String,
    /// As given (the API escapes it on output).
    pub content: String,
    /// `Y` or `N`.
    pub icmp: String,
    pub next_rule_id: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FirewallRuleRecord {
    pub firewall_id: String,
    pub rule_id: i64,
    pub bound: String,
    pub protocol: String,
    pub port: String,
    pub ip: String,
    pub title: String,
    pub content: Option<String>,
    pub position: i64,
}

/// A validated rule to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    pub bound: String,
    pub protocol: String,
    pub port: String,
    pub ip: String,
    pub title: String,
    pub content: Option<String>,
}

impl NewRule {
    /// Two rules are duplicates when they match the same traffic as written: bound, protocol,
    /// port and ip equal (titles and contents are labels).
    pub fn same_match(&self, other: &NewRule) -> bool {
        self.bound == other.bound && self.protocol == other.protocol && self.port == other.port && self.ip == other.ip
    }
}

impl From<&FirewallRuleRecord> for NewRule {
    fn from(r: &FirewallRuleRecord) -> NewRule {
        NewRule {
            bound: r.bound.clone(),
            protocol: r.protocol.clone(),
            port: r.port.clone(),
            ip: r.ip.clone(),
            title: r.title.clone(),
            content: r.content.clone(),
        }
    }
}

/// Changes to a firewall; `None` keeps a field. `rules` replaces the whole rule set.
#[derive(Debug, Clone, Default)]
pub struct FirewallEdit {
    pub title: Option<String>,
    pub content: Option<String>,
    pub icmp: Option<String>,
    pub rules: Option<Vec<NewRule>>,
}

/// Changes to one rule; `None` keeps a field, `content: Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct RuleEdit {
    pub bound: Option<String>,
    pub protocol: Option<String>,
    pub port: Option<String>,
    pub ip: Option<String>,
    pub title: Option<String>,
    pub content: Option<Option<String>>,
}

/// Why a firewall change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirewallRefused {
    /// The firewall does not exist for this account.
    NotFound,
    RuleNotFound,
    /// The instance does not exist for this account.
    InstanceNotFound,
    /// The instance is in this status (`pending` or `work`).
    InstanceBusy(InstanceStatus),
    /// The firewall would have more rules than allowed.
    TooManyRules,
    /// The instance would have more firewalls than allowed.
    TooManyFirewalls,
    /// The rule duplicates the rule with this id.
    Duplicate(i64),
    /// The firewall is attached to instances.
    InUse(i64),
}

/// What an attach or detach did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachOutcome {
    /// False when the pair was already in the asked state (an idempotent repeat).
    pub changed: bool,
}

/// What an operation that follows a change needs; the store writes it only when it is due.
#[derive(Debug, Clone, Copy)]
pub struct SyncOp<'a> {
    pub operation_id: &'a str,
    pub kind: &'a str,
    pub now_ms: i64,
}

const COLUMNS: &str = "firewall_id, account_id, title, content, icmp, next_rule_id, created_at";
const RULE_COLUMNS: &str = "firewall_id, rule_id, bound, protocol, port, ip, title, content, position";

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// Takes the firewall's row lock; false when the account has no such firewall.
async fn lock_firewall(tx: &mut Tx<'_>, account_id: &str, firewall_id: &str) -> Result<bool> {
    let r = sqlx::query("UPDATE firewalls SET next_rule_id = next_rule_id WHERE account_id = $1 AND firewall_id = $2")
        .bind(account_id)
        .bind(firewall_id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

async fn rules_in(tx: &mut Tx<'_>, firewall_id: &str) -> Result<Vec<FirewallRuleRecord>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {RULE_COLUMNS} FROM firewall_rules WHERE firewall_id = $1 ORDER BY position, rule_id"
    ))
    .bind(firewall_id)
    .fetch_all(&mut **tx)
    .await?)
}

async fn attachment_count(tx: &mut Tx<'_>, firewall_id: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM firewall_attachments WHERE firewall_id = $1")
        .bind(firewall_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(n)
}

/// Takes `n` rule ids from the firewall's counter; returns the first.
async fn take_rule_ids(tx: &mut Tx<'_>, firewall_id: &str, n: i64) -> Result<i64> {
    let (first,): (i64,) = sqlx::query_as("SELECT next_rule_id FROM firewalls WHERE firewall_id = $1")
        .bind(firewall_id)
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query("UPDATE firewalls SET next_rule_id = $1 WHERE firewall_id = $2")
        .bind(first + n)
        .bind(firewall_id)
        .execute(&mut **tx)
        .await?;
    Ok(first)
}

async fn insert_rule(tx: &mut Tx<'_>, r: &FirewallRuleRecord) -> Result<()> {
    sqlx::query(&format!("INSERT INTO firewall_rules ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
        .bind(&r.firewall_id)
        .bind(r.rule_id)
        .bind(&r.bound)
        .bind(&r.protocol)
        .bind(&r.port)
        .bind(&r.ip)
        .bind(&r.title)
        .bind(&r.content)
        .bind(r.position)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Inserts rules with fresh ids after the existing ones.
async fn append_rules(
    tx: &mut Tx<'_>,
    firewall_id: &str,
    rules: &[NewRule],
    first_position: i64,
) -> Result<Vec<FirewallRuleRecord>> {
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    let first = take_rule_ids(tx, firewall_id, rules.len() as i64).await?;
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let rec = FirewallRuleRecord {
            firewall_id: firewall_id.to_owned(),
            rule_id: first + i as i64,
            bound: r.bound.clone(),
            protocol: r.protocol.clone(),
            port: r.port.clone(),
            ip: r.ip.clone(),
            title: r.title.clone(),
            content: r.content.clone(),
            position: first_position + i as i64,
        };
        insert_rule(tx, &rec).await?;
        out.push(rec);
    }
    Ok(out)
}

/// The first index pair (i, j), i < j, of rules that match the same traffic.
pub fn first_duplicate(rules: &[NewRule]) -> Option<(usize, usize)> {
    for (j, b) in rules.iter().enumerate() {
        if let Some(i) = rules[..j].iter().position(|a| a.same_match(b)) {
            return Some((i, j));
        }
    }
    None
}

/// Writes the sync operation when the firewall is attached somewhere; true when written.
async fn sync_if_attached(
    tx: &mut Tx<'_>,
    account_id: &str,
    firewall_id: &str,
    sync: Option<SyncOp<'_>>,
) -> Result<bool> {
    let Some(s) = sync else { return Ok(false) };
    if attachment_count(tx, firewall_id).await? == 0 {
        return Ok(false);
    }
    insert_operation(
        tx,
        &NewOperation {
            operation_id: s.operation_id,
            account_id,
            kind: s.kind,
            resource_id: firewall_id,
            params: "{}",
            now_ms: s.now_ms,
        },
    )
    .await?;
    Ok(true)
}

impl Store {
    /// Creates a firewall with its rules (already validated, at most the limit, no duplicates)
    /// and, when given, an operation, atomically. Returns the rules with their ids.
    pub async fn create_firewall(
        &self,
        rec: &FirewallRecord,
        rules: &[NewRule],
        op: Option<&NewOperation<'_>>,
    ) -> Result<Vec<FirewallRuleRecord>> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&format!("INSERT INTO firewalls ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(&rec.firewall_id)
            .bind(&rec.account_id)
            .bind(&rec.title)
            .bind(&rec.content)
            .bind(&rec.icmp)
            .bind(1_i64)
            .bind(rec.created_at)
            .execute(&mut *tx)
            .await?;
        let rules = append_rules(&mut tx, &rec.firewall_id, rules, 0).await?;
        if let Some(op) = op {
            insert_operation(&mut tx, op).await?;
        }
        tx.commit().await?;
        Ok(rules)
    }

    pub async fn firewall(&self, account_id: &str, firewall_id: &str) -> Result<Option<FirewallRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM firewalls WHERE account_id = $1 AND firewall_id = $2"))
            .bind(account_id)
            .bind(firewall_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// True when the account has this firewall (to validate a `security_group` on instance
    /// create before writing anything).
    pub async fn firewall_exists(&self, account_id: &str, firewall_id: &str) -> Result<bool> {
        Ok(self.firewall(account_id, firewall_id).await?.is_some())
    }

    /// One page of an account's firewalls in creation order, and the total.
    pub async fn list_firewalls(&self, account_id: &str, page: PageQuery) -> Result<(Vec<FirewallRecord>, i64)> {
        let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM firewalls WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(self.pool())
            .await?;
        let rows = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM firewalls WHERE account_id = $1 ORDER BY created_at, firewall_id LIMIT $2 OFFSET $3"
        ))
        .bind(account_id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(self.pool())
        .await?;
        Ok((rows, total))
    }

    /// The rules of these firewalls, by firewall, in their order.
    pub async fn firewall_rules(&self, firewall_ids: &[String]) -> Result<Vec<FirewallRuleRecord>> {
        if firewall_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ps: Vec<String> = (1..=firewall_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM firewall_rules WHERE firewall_id IN ({}) ORDER BY firewall_id, position, rule_id",
            ps.join(", ")
        );
        let mut q = sqlx::query_as(&sql);
        for id in firewall_ids {
            q = q.bind(id);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// (firewall_id, instance_id) of these firewalls' attachments, in attach order.
    pub async fn firewall_attachments(&self, firewall_ids: &[String]) -> Result<Vec<(String, String)>> {
        if firewall_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ps: Vec<String> = (1..=firewall_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT firewall_id, instance_id FROM firewall_attachments WHERE firewall_id IN ({}) \
             ORDER BY created_at, instance_id",
            ps.join(", ")
        );
        let mut q = sqlx::query_as(&sql);
        for id in firewall_ids {
            q = q.bind(id);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Edits a firewall. `rules` replaces the rule set (already validated: at most the limit, no
    /// duplicates among them). `sync` is written when the firewall is attached somewhere; the
    /// answer says whether it was.
    pub async fn edit_firewall(
        &self,
        account_id: &str,
        firewall_id: &str,
        c: &FirewallEdit,
        sync: Option<SyncOp<'_>>,
    ) -> Result<Result<bool, FirewallRefused>> {
        let mut tx = self.begin_write().await?;
        if !lock_firewall(&mut tx, account_id, firewall_id).await? {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::NotFound));
        }
        sqlx::query(
            "UPDATE firewalls SET title = COALESCE($1, title), content = COALESCE($2, content), icmp = COALESCE($3, icmp) \
             WHERE firewall_id = $4",
        )
        .bind(&c.title)
        .bind(&c.content)
        .bind(&c.icmp)
        .bind(firewall_id)
        .execute(&mut *tx)
        .await?;
        if let Some(rules) = &c.rules {
            sqlx::query("DELETE FROM firewall_rules WHERE firewall_id = $1")
                .bind(firewall_id)
                .execute(&mut *tx)
                .await?;
            append_rules(&mut tx, firewall_id, rules, 0).await?;
        }
        let synced = sync_if_attached(&mut tx, account_id, firewall_id, sync).await?;
        tx.commit().await?;
        Ok(Ok(synced))
    }

    /// Deletes a firewall and its rules; refused while it is attached to an instance.
    pub async fn delete_firewall(&self, account_id: &str, firewall_id: &str) -> Result<Result<(), FirewallRefused>> {
        let mut tx = self.begin_write().await?;
        if !lock_firewall(&mut tx, account_id, firewall_id).await? {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::NotFound));
        }
        let attached = attachment_count(&mut tx, firewall_id).await?;
        if attached > 0 {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::InUse(attached)));
        }
        sqlx::query("DELETE FROM firewall_rules WHERE firewall_id = $1").bind(firewall_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM firewalls WHERE firewall_id = $1").bind(firewall_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }
}
