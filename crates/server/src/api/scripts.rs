//! User scripts (spec §7): the iwinv list at the singular path, and create/delete extensions.

use openwinv_store::ScriptRecord;
use openwinv_wire::keys::UserScript;

use super::named_text::named_text_api;

pub use crate::service::named_text::{CONTENT_MAX_BYTES, NAME_MAX};

named_text_api! { record = ScriptRecord, wire = UserScript, input = NewScript, tag = "user scripts", total = true,
    list = "/v1/instance/script" "The account's user scripts.", create = "Stores a user script [ext].",
    delete = "/v1/instance/script/{user_script_id}" "user_script_id" "Deletes a user script [ext].",
    to_wire = |state, r| UserScript { created_at: state.timestamp(r.created_at), user_script_id: r.user_script_id,
        name: r.name, content: r.content },
}
