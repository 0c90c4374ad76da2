//! `roster user add|list|remove` and `roster token create`: who may sign in, from the
//! command line (the first admin of a fresh service comes from here, or from
//! `ROSTER_ADMIN_PASSWORD`).

use std::io::Read;

use clap::{Args, Subcommand};

use crate::access::password;
use crate::config::Settings;
use crate::db;
use crate::domain::user::{Password, Role, UserName};
use crate::models::{token, user};

#[derive(Debug, Args)]
pub struct UserOpts {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (or, if it exists, set its role and password). Without
    /// --password-stdin a password is generated and printed once.
    Add {
        /// The user's name (what they sign in with).
        #[arg(value_parser = UserName::parse)]
        name: UserName,
        /// `admin` (everything, users included) or `member` (students, their own jobs).
        #[arg(long, default_value = "member", value_parser = |s: &str| s.parse::<Role>())]
        role: Role,
        /// Read the password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users and their roles.
    List,
    /// Remove a user: their tokens and sessions go, their jobs stay.
    Remove {
        /// The user's name.
        #[arg(value_parser = UserName::parse)]
        name: UserName,
    },
}

#[derive(Debug, Args)]
pub struct TokenOpts {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an API token for a user; it is printed once (only its hash is kept).
    Create {
        /// The user the token acts as.
        #[arg(long, value_parser = UserName::parse)]
        user: UserName,
        /// What the token is for.
        #[arg(long)]
        name: String,
    },
    /// List a user's tokens (never their secrets).
    List {
        /// Whose tokens.
        #[arg(long, value_parser = UserName::parse)]
        user: UserName,
    },
    /// Revoke a token by its id (as `token list` shows it): it stops working at once, and
    /// the live streams opened with it close within seconds.
    Revoke {
        /// The token's id.
        id: String,
    },
}

fn generated_password() -> String {
    // uuid v4 draws from the operating system's CSPRNG.
    uuid::Uuid::new_v4().simple().to_string()[..20].to_owned()
}

pub fn run_user(settings: Settings, opts: UserOpts) -> anyhow::Result<i32> {
    let pool = db::connect(&settings.database_url, 1)?;
    db::migrate(&pool)?;
    let mut conn = pool.get()?;
    match opts.command {
        UserCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            let (raw, shown) = if password_stdin {
                let mut input = String::new();
                std::io::stdin().read_to_string(&mut input)?;
                (input.lines().next().unwrap_or_default().to_owned(), false)
            } else {
                (generated_password(), true)
            };
            let password =
                Password::parse(&raw).map_err(|e| anyhow::anyhow!("the password {e}"))?;
            let hash = password::hash(&password);
            let existed = user::update(&mut conn, &name, Some(role), Some(&hash))?.is_some();
            if !existed {
                user::insert(&mut conn, &name, role, &hash)?;
            }
            let what = if existed { "updated" } else { "added" };
            println!("user {name} {what} ({role})");
            if shown {
                println!("password: {raw}");
            }
        }
        UserCommand::List => {
            for u in user::list(&mut conn)? {
                println!("{:<32} {}", u.name, u.role);
            }
        }
        UserCommand::Remove { name } => {
            if !user::delete(&mut conn, &name)? {
                anyhow::bail!("there is no user {name}");
            }
            println!("user {name} removed");
        }
    }
    Ok(0)
}

pub fn run_token(settings: Settings, opts: TokenOpts) -> anyhow::Result<i32> {
    let pool = db::connect(&settings.database_url, 1)?;
    db::migrate(&pool)?;
    let mut conn = pool.get()?;
    match opts.command {
        TokenCommand::Create { user: owner, name } => {
            if user::find(&mut conn, &owner)?.is_none() {
                anyhow::bail!("there is no user {owner}");
            }
            let (_, secret) = token::create(&mut conn, &owner, name.trim())?;
            println!("{secret}");
        }
        TokenCommand::List { user: owner } => {
            if user::find(&mut conn, &owner)?.is_none() {
                anyhow::bail!("there is no user {owner}");
            }
            for t in token::list(&mut conn, &owner)? {
                let used = t
                    .last_used_at
                    .map_or_else(|| "never used".to_owned(), |at| format!("last used {at}"));
                println!("{}  {:<32} created {}  {used}", t.id, t.name, t.created_at);
            }
        }
        TokenCommand::Revoke { id } => {
            if !token::delete(&mut conn, None, &id)? {
                anyhow::bail!("there is no token {id}");
            }
            println!("token {id} revoked");
        }
    }
    Ok(0)
}
