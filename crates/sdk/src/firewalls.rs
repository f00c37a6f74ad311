//! Firewalls (spec §9) through the `/v1/security-groups` family: the firewall, its rules, and
//! the instances it is attached to. Attaching and detaching are asynchronous (202 and
//! `X-Operation-Id`); the rest answers at once.

use openwinv_wire::firewalls::{
    AttachmentReceipt, Firewall, FirewallChanges, FirewallRule, FirewallRuleChanges, FirewallTarget, NewFirewall,
    NewFirewallRule,
};
use reqwest::Method;

use crate::client::Client;
use crate::error::Result;
use crate::instances::{Accepted, accepted};
use crate::pages::{Page, PageRequest};
use crate::response::{first_of, first_row};

const FIREWALLS: &str = "/v1/security-groups";
const FAMILY: &str = "security-groups";

impl Client {
    /// One page of the account's firewalls (server default 50 a page).
    pub async fn firewalls(&self, page: PageRequest) -> Result<Page<Firewall>> {
        Ok(Page::from_envelope(self.get(FIREWALLS, &page).await?, page))
    }

    /// One firewall; `None` when there is none with that id (the server answers no rows).
    pub async fn firewall(&self, firewall_id: &str) -> Result<Option<Firewall>> {
        let env = self.execute::<Vec<Firewall>>(self.request_of(Method::GET, &["v1", FAMILY, firewall_id])).await?;
        Ok(env.result.into_iter().next())
    }

    /// Creates a firewall without rules; `icmp` is `Y` (the server default) or `N`.
    pub async fn create_firewall(&self, title: &str, content: &str, icmp: Option<&str>) -> Result<Firewall> {
        let body =
            NewFirewall { title: title.into(), content: content.into(), icmp: icmp.map(String::from), rules: None };
        first_row(self.send(Method::POST, FIREWALLS, Some(&body)).await?)
    }

    /// Changes the title, content or ICMP setting; fields left `None` keep their values.
    pub async fn edit_firewall(&self, firewall_id: &str, changes: &FirewallChanges) -> Result<Firewall> {
        let request = self.request_of(Method::PUT, &["v1", FAMILY, firewall_id]).json(changes);
        first_row(self.execute(request).await?)
    }

    /// Deletes a firewall that is attached nowhere; the answer is the string `success`.
    pub async fn delete_firewall(&self, firewall_id: &str) -> Result<String> {
        Ok(self.execute::<String>(self.request_of(Method::DELETE, &["v1", FAMILY, firewall_id])).await?.result)
    }

    /// Ids of the instances the firewall is attached to.
    pub async fn firewall_instances(&self, firewall_id: &str) -> Result<Vec<String>> {
        let request = self.request_of(Method::GET, &["v1", FAMILY, firewall_id, "instances"]);
        Ok(self.execute::<Vec<String>>(request).await?.result)
    }

    /// Attaches the firewall to an instance (receipt status `attaching`).
    pub async fn attach_firewall(&self, firewall_id: &str, instance_id: &str) -> Result<Accepted<AttachmentReceipt>> {
        self.firewall_attachment(firewall_id, instance_id, "attach").await
    }

    /// Detaches the firewall from an instance (receipt status `detaching`).
    pub async fn detach_firewall(&self, firewall_id: &str, instance_id: &str) -> Result<Accepted<AttachmentReceipt>> {
        self.firewall_attachment(firewall_id, instance_id, "detach").await
    }

    /// The firewall's rules.
    pub async fn firewall_rules(&self, firewall_id: &str) -> Result<Vec<FirewallRule>> {
        let request = self.request_of(Method::GET, &["v1", FAMILY, firewall_id, "rules"]);
        Ok(self.execute::<Vec<FirewallRule>>(request).await?.result)
    }

    /// Adds a rule and returns it with its id.
    pub async fn add_firewall_rule(&self, firewall_id: &str, rule: &NewFirewallRule) -> Result<FirewallRule> {
        let request = self.request_of(Method::POST, &["v1", FAMILY, firewall_id, "rules"]).json(rule);
        first_row(self.execute(request).await?)
    }

    /// Changes a rule; fields left `None` keep their values, an empty `content` clears it.
    pub async fn edit_firewall_rule(
        &self,
        firewall_id: &str,
        rule_id: &str,
        changes: &FirewallRuleChanges,
    ) -> Result<FirewallRule> {
        let request = self.request_of(Method::PUT, &["v1", FAMILY, firewall_id, "rules", rule_id]).json(changes);
        first_row(self.execute(request).await?)
    }

    /// Deletes a rule; the answer is the string `success`.
    pub async fn delete_firewall_rule(&self, firewall_id: &str, rule_id: &str) -> Result<String> {
        let request = self.request_of(Method::DELETE, &["v1", FAMILY, firewall_id, "rules", rule_id]);
        Ok(self.execute::<String>(request).await?.result)
    }

    async fn firewall_attachment(
        &self,
        firewall_id: &str,
        instance_id: &str,
        action: &str,
    ) -> Result<Accepted<AttachmentReceipt>> {
        let body = FirewallTarget { instance_id: instance_id.into() };
        let request = self.request_of(Method::POST, &["v1", FAMILY, firewall_id, action]).json(&body);
        accepted::<AttachmentReceipt>(&self.answer(request).await?)?.map(first_of)
    }
}
