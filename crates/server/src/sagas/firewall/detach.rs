//! `firewall.detach`: applies the rule set of an instance a firewall was detached from; a failed
//! detach attaches it again. Implemented with `firewall.attach` by [`super::Pair`].

/// The `firewall.detach` operation kind.
pub type Detach = super::Pair<false>;
