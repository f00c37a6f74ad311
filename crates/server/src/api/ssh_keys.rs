//! SSH public keys (spec §9): the iwinv list, and create/delete extensions.

use openwinv_store::SshKeyRecord;
use openwinv_wire::keys::SshKey;

use super::named_text::named_text_api;

pub use crate::service::named_text::NAME_MAX;

// The list has no `total` [iwinv live] (spec §3).
named_text_api! { record = SshKeyRecord, wire = SshKey, input = NewSshKey, tag = "ssh keys", total = false,
    list = "/v1/auth/ssh_key" "The account's SSH keys.", create = "Registers an OpenSSH public key [ext].",
    delete = "/v1/auth/ssh_key/{ssh_key_id}" "ssh_key_id" "Deletes a key [ext]; instances made with it keep their copy.",
    to_wire = |state, r| SshKey { start_date: state.timestamp(r.created_at), ssh_key_id: r.ssh_key_id, name: r.name,
        fingerprint: r.fingerprint },
}
