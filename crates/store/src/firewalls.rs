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

use crate::operations::{NewOperation, insert_operation};
use crate::records::InstanceStatus;
use crate::{PageQuery, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FirewallRecord {
    pub firewall_id: String,
    pub account_id: String,
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

    /// Ids of the firewalls attached to an instance, in attach order (instance view, field 131072).
    pub async fn firewall_ids_of(&self, instance_id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT firewall_id FROM firewall_attachments WHERE instance_id = $1 ORDER BY created_at, firewall_id",
        )
        .bind(instance_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The firewalls attached to an instance with their rules (what the compiler needs).
    pub async fn firewalls_of_instance(
        &self,
        instance_id: &str,
    ) -> Result<Vec<(FirewallRecord, Vec<FirewallRuleRecord>)>> {
        let firewalls: Vec<FirewallRecord> = sqlx::query_as(&format!(
            "SELECT {} FROM firewalls f WHERE f.firewall_id IN \
             (SELECT firewall_id FROM firewall_attachments WHERE instance_id = $1) ORDER BY f.firewall_id",
            COLUMNS.split(", ").map(|c| format!("f.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(instance_id)
        .fetch_all(self.pool())
        .await?;
        let ids: Vec<String> = firewalls.iter().map(|f| f.firewall_id.clone()).collect();
        let mut rules = self.firewall_rules(&ids).await?;
        Ok(firewalls
            .into_iter()
            .map(|f| {
                let mine = rules.iter().filter(|r| r.firewall_id == f.firewall_id).cloned().collect();
                rules.retain(|r| r.firewall_id != f.firewall_id);
                (f, mine)
            })
            .collect())
    }

    /// Removes every attachment of an instance (when it is deleted). Idempotent.
    pub async fn detach_all(&self, instance_id: &str) -> Result<u64> {
        let r = sqlx::query("DELETE FROM firewall_attachments WHERE instance_id = $1")
            .bind(instance_id)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected())
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

    /// Adds one rule, refusing past `max_rules` or a duplicate of an existing rule.
    pub async fn add_firewall_rule(
        &self,
        account_id: &str,
        firewall_id: &str,
        rule: &NewRule,
        max_rules: usize,
        sync: Option<SyncOp<'_>>,
    ) -> Result<Result<(FirewallRuleRecord, bool), FirewallRefused>> {
        let mut tx = self.begin_write().await?;
        if !lock_firewall(&mut tx, account_id, firewall_id).await? {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::NotFound));
        }
        let existing = rules_in(&mut tx, firewall_id).await?;
        if let Some(dup) = existing.iter().find(|r| NewRule::from(*r).same_match(rule)) {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::Duplicate(dup.rule_id)));
        }
        if existing.len() >= max_rules {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::TooManyRules));
        }
        let position = existing.iter().map(|r| r.position + 1).max().unwrap_or(0);
        let mut added = append_rules(&mut tx, firewall_id, std::slice::from_ref(rule), position).await?;
        let synced = sync_if_attached(&mut tx, account_id, firewall_id, sync).await?;
        tx.commit().await?;
        Ok(Ok((added.remove(0), synced)))
    }

    /// Changes one rule; omitted fields keep their values. Refuses a result that duplicates
    /// another rule of the firewall.
    pub async fn edit_firewall_rule(
        &self,
        account_id: &str,
        firewall_id: &str,
        rule_id: i64,
        c: &RuleEdit,
        sync: Option<SyncOp<'_>>,
    ) -> Result<Result<(FirewallRuleRecord, bool), FirewallRefused>> {
        let mut tx = self.begin_write().await?;
        if !lock_firewall(&mut tx, account_id, firewall_id).await? {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::NotFound));
        }
        let existing = rules_in(&mut tx, firewall_id).await?;
        let Some(current) = existing.iter().find(|r| r.rule_id == rule_id) else {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::RuleNotFound));
        };
        let mut next = current.clone();
        let set = |slot: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                slot.clone_from(v);
            }
        };
        set(&mut next.bound, &c.bound);
        set(&mut next.protocol, &c.protocol);
        set(&mut next.port, &c.port);
        set(&mut next.ip, &c.ip);
        set(&mut next.title, &c.title);
        if let Some(content) = &c.content {
            next.content.clone_from(content);
        }
        let candidate = NewRule::from(&next);
        if let Some(dup) = existing.iter().find(|r| r.rule_id != rule_id && NewRule::from(*r).same_match(&candidate)) {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::Duplicate(dup.rule_id)));
        }
        sqlx::query(
            "UPDATE firewall_rules SET bound = $1, protocol = $2, port = $3, ip = $4, title = $5, content = $6 \
             WHERE firewall_id = $7 AND rule_id = $8",
        )
        .bind(&next.bound)
        .bind(&next.protocol)
        .bind(&next.port)
        .bind(&next.ip)
        .bind(&next.title)
        .bind(&next.content)
        .bind(firewall_id)
        .bind(rule_id)
        .execute(&mut *tx)
        .await?;
        let synced = sync_if_attached(&mut tx, account_id, firewall_id, sync).await?;
        tx.commit().await?;
        Ok(Ok((next, synced)))
    }

    pub async fn delete_firewall_rule(
        &self,
        account_id: &str,
        firewall_id: &str,
        rule_id: i64,
        sync: Option<SyncOp<'_>>,
    ) -> Result<Result<bool, FirewallRefused>> {
        let mut tx = self.begin_write().await?;
        if !lock_firewall(&mut tx, account_id, firewall_id).await? {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::NotFound));
        }
        let r = sqlx::query("DELETE FROM firewall_rules WHERE firewall_id = $1 AND rule_id = $2")
            .bind(firewall_id)
            .bind(rule_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::RuleNotFound));
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

    /// Attaches (`attach`) or detaches a firewall and writes the operation that applies the
    /// result to the instance, atomically. The instance must be the account's and not busy
    /// (`pending`/`work`); an attach is refused past `max_per_instance`. Repeating the current
    /// state is accepted (`changed: false`) and still writes the operation, which re-applies.
    /// `params(changed)` gives the operation's params (the caller's saga knows their shape).
    #[allow(clippy::too_many_arguments)]
    pub async fn begin_firewall_attachment(
        &self,
        account_id: &str,
        firewall_id: &str,
        instance_id: &str,
        attach: bool,
        max_per_instance: i64,
        op: SyncOp<'_>,
        params: &(dyn Fn(bool) -> String + Sync),
    ) -> Result<Result<AttachOutcome, FirewallRefused>> {
        let mut tx = self.begin_write().await?;
        if !lock_firewall(&mut tx, account_id, firewall_id).await? {
            tx.rollback().await?;
            return Ok(Err(FirewallRefused::NotFound));
        }
        // The instance's row lock: its operations (a delete above all) serialize with this.
        let refused = match crate::volumes::lock_instance(&mut tx, account_id, instance_id).await? {
            None => Some(FirewallRefused::InstanceNotFound),
            Some((s @ (InstanceStatus::Pending | InstanceStatus::Work), _)) => Some(FirewallRefused::InstanceBusy(s)),
            Some(_) => None,
        };
        if let Some(r) = refused {
            tx.rollback().await?;
            return Ok(Err(r));
        }
        let (present,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM firewall_attachments WHERE firewall_id = $1 AND instance_id = $2")
                .bind(firewall_id)
                .bind(instance_id)
                .fetch_one(&mut *tx)
                .await?;
        let changed = (present > 0) != attach;
        if changed && attach {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM firewall_attachments WHERE instance_id = $1")
                .bind(instance_id)
                .fetch_one(&mut *tx)
                .await?;
            if n >= max_per_instance {
                tx.rollback().await?;
                return Ok(Err(FirewallRefused::TooManyFirewalls));
            }
            insert_attachment(&mut tx, firewall_id, instance_id, account_id, op.now_ms / 1000).await?;
        } else if changed {
            sqlx::query("DELETE FROM firewall_attachments WHERE firewall_id = $1 AND instance_id = $2")
                .bind(firewall_id)
                .bind(instance_id)
                .execute(&mut *tx)
                .await?;
        }
        let params = params(changed);
        insert_operation(
            &mut tx,
            &NewOperation {
                operation_id: op.operation_id,
                account_id,
                kind: op.kind,
                resource_id: firewall_id,
                params: &params,
                now_ms: op.now_ms,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(AttachOutcome { changed }))
    }

    /// Undoes an accepted attach or detach whose operation failed: removes (`attached: true`)
    /// or restores the pair. A restore is skipped when the firewall or the instance is gone.
    /// Idempotent.
    pub async fn revert_firewall_attachment(
        &self,
        firewall_id: &str,
        instance_id: &str,
        attached: bool,
        now: i64,
    ) -> Result<()> {
        if attached {
            sqlx::query("DELETE FROM firewall_attachments WHERE firewall_id = $1 AND instance_id = $2")
                .bind(firewall_id)
                .bind(instance_id)
                .execute(self.writer())
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO firewall_attachments (firewall_id, instance_id, account_id, created_at) \
                 SELECT f.firewall_id, i.instance_id, f.account_id, $3 FROM firewalls f, instances i \
                 WHERE f.firewall_id = $1 AND i.instance_id = $2 AND i.account_id = f.account_id \
                 ON CONFLICT (firewall_id, instance_id) DO NOTHING",
            )
            .bind(firewall_id)
            .bind(instance_id)
            .bind(now)
            .execute(self.writer())
            .await?;
        }
        Ok(())
    }

    /// Instances a firewall is attached to (for re-applying after a rule change).
    pub async fn instances_of_firewall(&self, firewall_id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT instance_id FROM firewall_attachments WHERE firewall_id = $1 ORDER BY created_at, instance_id",
        )
        .bind(firewall_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

/// Attaches inside the caller's transaction, after the instance row is written (the deprecated
/// `security_group` of instance create). The caller has checked that the firewall is the
/// account's ([`Store::firewall_exists`]); a new instance has no other firewall, so the
/// per-instance limit cannot be reached. Idempotent.
pub async fn insert_attachment(
    conn: &mut sqlx::AnyConnection,
    firewall_id: &str,
    instance_id: &str,
    account_id: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO firewall_attachments (firewall_id, instance_id, account_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (firewall_id, instance_id) DO NOTHING",
    )
    .bind(firewall_id)
    .bind(instance_id)
    .bind(account_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
