//! Instances (spec §7): list, detail, create, edit, delete, actions and the remote console.
//!
//! Reads build views here (`view`); writes are parse → [`crate::service::instances`] → render
//! (`create`, `actions`): the service validates completely, then writes the instance change and
//! its operation in one transaction; the handler answers 202 with `X-Operation-Id`.

mod actions;
mod cache;
mod create;
mod view;

pub use actions::*;
pub use cache::{PAGE_CACHE_BYTES, PageCache, cached};
pub use create::*;
pub use view::*;

pub use crate::service::instances::{CONSOLE_TTL, DESCRIPTION_MAX, MAX_COUNT, MAX_VOLUMES, NAME_MAX, new_password};
