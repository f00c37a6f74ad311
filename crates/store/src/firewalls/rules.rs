//! One rule's changes: add, edit and delete, each under the firewall's row lock, with the
//! `firewall.sync` operation written when the firewall is attached somewhere.

use super::{
    FirewallRefused, FirewallRuleRecord, NewRule, RuleEdit, SyncOp, Tx, append_rules, lock_firewall, rules_in,
    sync_if_attached,
};
use crate::{Result, Store};

impl Store {
    /// Begins a write holding the firewall's row lock and reads its rules; `None` (rolled back)
    /// when the account has no such firewall.
    async fn begin_with_rules(
        &self,
        account_id: &str,
        firewall_id: &str,
    ) -> Result<Option<(Tx<'static>, Vec<FirewallRuleRecord>)>> {
        let mut tx = self.begin_write().await?;
        if !lock_firewall(&mut tx, account_id, firewall_id).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        let rules = rules_in(&mut tx, firewall_id).await?;
        Ok(Some((tx, rules)))
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
        let Some((mut tx, existing)) = self.begin_with_rules(account_id, firewall_id).await? else {
            return Ok(Err(FirewallRefused::NotFound));
        };
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
        let Some((mut tx, existing)) = self.begin_with_rules(account_id, firewall_id).await? else {
            return Ok(Err(FirewallRefused::NotFound));
        };
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
}
