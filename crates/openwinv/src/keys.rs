//! `ssh-keys` and `scripts`: for the caller's own account through `/v1`, and for a named account
//! through `/admin/v1`. Both share the arguments, the calls and the rendering; only the scope
//! (`A`: nothing, or `--account NAME`) differs.

use std::path::PathBuf;

use clap::{Args, FromArgMatches, Subcommand};
use openwinv_sdk::wire::keys::{SshKey, UserScript};
use openwinv_sdk::{AdminClient, Client, Page, PageRequest};

use crate::input::read_text;
use crate::output::{Column, Output, Tabular, long, number, text};
use crate::paging::{self, Paging};
use crate::resolve;

/// No scope: the caller's own account.
#[derive(Debug, Clone, Args)]
pub struct Own {}

/// The account an operator acts for.
#[derive(Debug, Clone, Args)]
pub struct AccountScope {
    /// The account to act for
    #[arg(long, value_name = "NAME")]
    pub account: String,
}

/// Whose keys and scripts a command touches.
#[derive(Clone, Copy)]
pub enum Owner<'a> {
    Own(&'a Client),
    Account(&'a AdminClient, &'a str),
}

/// `ssh-keys` or `scripts` for the caller's own account: an action, or the list's arguments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct KindArgs<I: Input> {
    #[command(subcommand)]
    action: Option<Action<Own, I>>,
    #[command(flatten)]
    list: ListArgs,
}

pub type SshKeysArgs = KindArgs<SshKeyInput>;
pub type ScriptsArgs = KindArgs<ScriptInput>;
pub type SshKeyAction<A> = Action<A, SshKeyInput>;
pub type ScriptAction<A> = Action<A, ScriptInput>;

/// What `create` of a kind takes: the name and the text (inline or from a file), and the
/// help lines of the kind's actions.
pub trait Input: Args + FromArgMatches {
    type Kind: Named;
    const LIST: &'static str;
    const CREATE: &'static str;
    const DELETE: &'static str;
    fn parts(&self) -> (&str, &Option<String>, &Option<PathBuf>);
}

#[derive(Debug, Subcommand)]
pub enum Action<A: Args + FromArgMatches, I: Input> {
    #[command(about = I::LIST)]
    List {
        #[command(flatten)]
        scope: A,
        #[command(flatten)]
        list: ListArgs,
    },
    #[command(about = I::CREATE)]
    Create {
        #[command(flatten)]
        scope: A,
        #[command(flatten)]
        input: I,
    },
    #[command(about = I::DELETE)]
    Delete {
        #[command(flatten)]
        scope: A,
        id: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Name contains this text
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, Args)]
pub struct SshKeyInput {
    /// 1-64 characters
    #[arg(long)]
    name: String,
    #[command(flatten)]
    source: PublicKeySource,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PublicKeySource {
    /// The public key line, e.g. "ssh-ed25519 AAAA… me@host"
    #[arg(long, value_name = "TEXT")]
    public_key: Option<String>,
    /// A file holding the public key line (`-` for standard input)
    #[arg(long, value_name = "PATH")]
    public_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ScriptInput {
    /// 1-64 characters
    #[arg(long)]
    name: String,
    #[command(flatten)]
    source: ScriptSource,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ScriptSource {
    /// The script text
    #[arg(long, value_name = "TEXT")]
    content: Option<String>,
    /// A file holding the script (`-` for standard input)
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

impl Input for SshKeyInput {
    type Kind = SshKey;
    const LIST: &'static str = "List SSH keys (the default)";
    const CREATE: &'static str = "Register an OpenSSH public key (ed25519, ecdsa, or rsa of at least 2048 bits)";
    const DELETE: &'static str = "Delete an SSH key (by id or name)";

    fn parts(&self) -> (&str, &Option<String>, &Option<PathBuf>) {
        (&self.name, &self.source.public_key, &self.source.public_key_file)
    }
}

impl Input for ScriptInput {
    type Kind = UserScript;
    const LIST: &'static str = "List user scripts (the default)";
    const CREATE: &'static str = "Store a user script (at most 32 KiB)";
    const DELETE: &'static str = "Delete a user script (by id or name)";

    fn parts(&self) -> (&str, &Option<String>, &Option<PathBuf>) {
        (&self.name, &self.source.content, &self.source.file)
    }
}

impl<A: Args + FromArgMatches, I: Input> Action<A, I> {
    pub fn scope(&self) -> &A {
        match self {
            Self::List { scope, .. } | Self::Create { scope, .. } | Self::Delete { scope, .. } => scope,
        }
    }
}

impl<I: Input> KindArgs<I> {
    /// The action, `list` when none was given.
    pub fn action(self) -> Action<Own, I> {
        self.action.unwrap_or(Action::List { scope: Own {}, list: self.list })
    }
}

/// SSH keys and user scripts as the CLI handles them: the owner's calls of one kind; list,
/// create and delete ([`run`], through the kind's [`Input`]) and the lookup by name ([`resolve::named`]) are written once over
/// them.
pub(crate) trait Named: Tabular + Sized {
    /// The kind, as a sentence names it.
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    async fn page(owner: Owner<'_>, name: Option<&str>, page: PageRequest) -> openwinv_sdk::Result<Page<Self>>;
    async fn create(owner: Owner<'_>, name: &str, text: &str) -> openwinv_sdk::Result<Self>;
    async fn delete(owner: Owner<'_>, id: &str) -> openwinv_sdk::Result<Self>;
}

/// [`Named`] for a kind whose calls are alike on both clients (the admin ones first take the
/// account): the kind, its name in a sentence, its id field, and its list, create and delete calls.
macro_rules! named {
    ($kind:ty, $what:literal, $id:ident, $page:ident, $create:ident, $delete:ident) => {
        impl Named for $kind {
            const KIND: &'static str = $what;

            fn id(&self) -> &str {
                &self.$id
            }

            fn name(&self) -> &str {
                &self.name
            }

            async fn page(owner: Owner<'_>, name: Option<&str>, page: PageRequest) -> openwinv_sdk::Result<Page<Self>> {
                match owner {
                    Owner::Own(c) => c.$page(name, page).await,
                    Owner::Account(a, account) => a.$page(account, name, page).await,
                }
            }

            async fn create(owner: Owner<'_>, name: &str, text: &str) -> openwinv_sdk::Result<Self> {
                match owner {
                    Owner::Own(c) => c.$create(name, text).await,
                    Owner::Account(a, account) => a.$create(account, name, text).await,
                }
            }

            async fn delete(owner: Owner<'_>, id: &str) -> openwinv_sdk::Result<Self> {
                match owner {
                    Owner::Own(c) => c.$delete(id).await,
                    Owner::Account(a, account) => a.$delete(account, id).await,
                }
            }
        }
    };
}

named!(SshKey, "SSH key", ssh_key_id, ssh_keys, create_ssh_key, delete_ssh_key);
named!(UserScript, "user script", user_script_id, scripts, create_script, delete_script);

/// List, create or delete keys or scripts of the owner.
pub async fn run<A: Args + FromArgMatches, I: Input>(
    owner: Owner<'_>,
    action: &Action<A, I>,
    out: Output,
) -> anyhow::Result<()> {
    match action {
        Action::List { list, .. } => {
            let name = list.name.as_deref();
            paging::show(&list.paging, |page| I::Kind::page(owner, name, page), out).await
        }
        Action::Create { input, .. } => {
            let (name, text, file) = input.parts();
            let text = match (text, file) {
                (Some(text), _) => text.clone(),
                (None, Some(path)) => read_text(path)?,
                (None, None) => unreachable!("clap requires one of the two"),
            };
            out.record(&I::Kind::create(owner, name, &text).await?)
        }
        Action::Delete { id: given, .. } => {
            let id = resolve::named::<I::Kind>(owner, given).await?;
            out.record(&I::Kind::delete(owner, &id).await?)
        }
    }
}

impl Tabular for SshKey {
    const COLUMNS: &'static [Column] = &[text("ID"), long("NAME"), long("FINGERPRINT"), text("CREATED")];

    fn cells(&self) -> Vec<String> {
        vec![self.ssh_key_id.clone(), self.name.clone(), self.fingerprint.clone(), self.start_date.clone()]
    }
}

/// How much of a script's first line the table shows.
const PREVIEW_CHARS: usize = 40;

impl Tabular for UserScript {
    const COLUMNS: &'static [Column] =
        &[text("ID"), long("NAME"), number("BYTES"), long("FIRST LINE"), text("CREATED")];

    fn cells(&self) -> Vec<String> {
        let first = self.content.lines().next().unwrap_or_default();
        let preview = match first.char_indices().nth(PREVIEW_CHARS) {
            Some((cut, _)) => format!("{}…", &first[..cut]),
            None => first.to_owned(),
        };
        vec![
            self.user_script_id.clone(),
            self.name.clone(),
            self.content.len().to_string(),
            preview,
            self.created_at.clone(),
        ]
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ID", self.user_script_id.clone()),
            ("NAME", self.name.clone()),
            ("CREATED", self.created_at.clone()),
            ("CONTENT", self.content.trim_end().to_owned()),
        ]
    }
}
