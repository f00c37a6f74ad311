//! `firewall.attach`: applies the rule set of an instance a firewall was attached to; a failed
//! attach detaches it again. Implemented with `firewall.detach` by [`super::Pair`].

/// The `firewall.attach` operation kind.
pub type Attach = super::Pair<true>;
