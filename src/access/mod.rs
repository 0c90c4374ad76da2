//! Who is asking, and what they may see.
//!
//! - [`Access`] is the process's access policy: whether requests must be signed in
//!   (`ROSTER_AUTH`), the key session cookies are signed with, and the limiters of failed
//!   sign-ins.
//! - [`Caller`] is who a request comes from: the signed-in [`User`] (from a session cookie
//!   or an `Authorization: Bearer` token, a [`Credential`]), or [`Caller::Open`] when
//!   access control is off. A request without valid credentials never reaches a guarded
//!   handler: 401 (the extractor is HTTP's, in `routes::caller`).
//! - [`Viewer`] is who watches a live stream: a caller whose credential is checked again
//!   whenever a revocation is made in any process, so a stream never outlives its right.
//! - Ownership: a member sees only what they created; an admin (and everyone, with access
//!   control off) sees all. Another member's job is "not found", not "forbidden", so that
//!   ids cannot be probed.

pub mod password;
mod throttle;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest};

use crate::config::{AuthSetting, Settings};
use crate::db::Pool;
use crate::domain::user::{Password, Role, UserName};
use crate::error::ApiError;
use crate::models::user::User;
use crate::models::{revocation, session, setting, token, user};
use throttle::Throttle;

/// The cookie of a signed-in browser.
pub const SESSION_COOKIE: &str = "roster_session";
/// How long a browser stays signed in.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Failed sign-ins allowed per [`LOGIN_WINDOW`]: for one user name from one address (what
/// a guesser at one place gets), for one user name from anywhere (a distributed guesser:
/// high enough that locking a user out takes an attack, not five requests), and for one
/// address whatever the names.
const LOGINS_PER_USER_AND_ADDRESS: u32 = 5;
const LOGINS_PER_USER: u32 = 50;
const LOGINS_PER_ADDRESS: u32 = 20;
const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Keys each sign-in throttle keeps at most (each under 100 bytes: a `UserName`, an IP).
pub const LIMITER_KEYS: usize = 10_000;

/// WebSocket sessions one user may hold open in one process.
pub const MAX_SESSIONS_PER_USER: usize = 64;

/// The access policy of this process.
#[derive(Clone)]
pub struct Access {
    /// Whether requests must be signed in now: with `ROSTER_AUTH=auto` it turns on as soon
    /// as a user exists (checked again whenever the access tables change).
    required: Arc<AtomicBool>,
    setting: AuthSetting,
    bind: std::net::SocketAddr,
    key: Key,
    logins: Arc<Logins>,
    /// Proxies whose `X-Forwarded-For` is believed (`ROSTER_TRUSTED_PROXIES`).
    trusted_proxies: Vec<IpAddr>,
    sockets: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Bumped whenever a revocation is seen (see [`Access::watch_revocations`]).
    revocations: Arc<tokio::sync::watch::Sender<u64>>,
}

/// One of a user's open WebSocket sessions; dropping it frees the place.
pub struct SocketSlot {
    user: String,
    sockets: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

struct Logins {
    per_user_and_address: Throttle,
    per_user: Throttle,
    per_address: Throttle,
}

/// Why a process refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Access {
    /// The policy `settings` ask for. Creates (or resets) `admin` from
    /// `ROSTER_ADMIN_PASSWORD`; refuses a service reachable from other hosts that requires
    /// signing in and has nobody who could (`http`: this process serves HTTP).
    pub fn start(settings: &Settings, pool: &Pool, http: bool) -> anyhow::Result<Self> {
        let mut conn = pool.get()?;
        if let Some(raw) = &settings.admin_password {
            let password =
                Password::parse(raw).map_err(|e| Refused(format!("ROSTER_ADMIN_PASSWORD {e}")))?;
            let admin = UserName::parse("admin").expect("a valid name");
            match user::find_with_hash(&mut conn, &admin)? {
                // Unchanged: its sessions stay.
                Some((found, stored))
                    if found.role == Role::Admin
                        && password::verify(password.expose(), &stored) => {}
                // Rotated: every session of the old password ends.
                Some(_) => {
                    user::update(
                        &mut conn,
                        &admin,
                        Some(Role::Admin),
                        Some(&password::hash(&password)),
                    )?;
                    log::info!("user admin updated from ROSTER_ADMIN_PASSWORD");
                }
                None => {
                    user::insert(&mut conn, &admin, Role::Admin, &password::hash(&password))?;
                    log::info!("user admin created from ROSTER_ADMIN_PASSWORD");
                }
            }
        }
        let users = user::count(&mut conn)?;
        let required = settings.auth.required(&settings.bind, users > 0);
        if http && required && users == 0 {
            let how =
                "create one with `roster user add NAME --role admin`, or set ROSTER_ADMIN_PASSWORD";
            if !settings.bind.ip().is_loopback() {
                return Err(Refused(format!(
                    "ROSTER_AUTH: roster on {} requires signing in, and there is no user yet: {how}",
                    settings.bind
                ))
                .into());
            }
            log::warn!(
                "ROSTER_AUTH: signing in is required and there is no user yet, so nobody can: {how}"
            );
        }
        let secret = match &settings.secret_key {
            Some(key) => key.clone(),
            None => setting::setting_or_insert(&mut conn, "session_key", || {
                (0..4)
                    .map(|_| uuid::Uuid::new_v4().simple().to_string())
                    .collect()
            })?,
        };
        Ok(Self {
            required: Arc::new(AtomicBool::new(required)),
            setting: settings.auth,
            bind: settings.bind,
            key: Key::derive_from(secret.as_bytes()),
            logins: Arc::new(Logins {
                per_user_and_address: Throttle::new(
                    LOGINS_PER_USER_AND_ADDRESS,
                    LOGIN_WINDOW,
                    LIMITER_KEYS,
                ),
                per_user: Throttle::new(LOGINS_PER_USER, LOGIN_WINDOW, LIMITER_KEYS),
                per_address: Throttle::new(LOGINS_PER_ADDRESS, LOGIN_WINDOW, LIMITER_KEYS),
            }),
            trusted_proxies: settings.trusted_proxies.clone(),
            sockets: Arc::default(),
            revocations: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    /// Whether requests must be signed in now.
    pub fn required(&self) -> bool {
        self.required.load(Ordering::SeqCst)
    }

    /// A place for one more WebSocket session of the caller: refused (429) past
    /// [`MAX_SESSIONS_PER_USER`]. Without access control there are no users to count.
    pub fn socket_slot(&self, caller: &Caller) -> Result<Option<SocketSlot>, ApiError> {
        let Caller::User(user) = caller else {
            return Ok(None);
        };
        let name = user.name.to_string();
        let mut open = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(name.clone()).or_insert(0);
        if *n >= MAX_SESSIONS_PER_USER {
            return Err(ApiError::TooMany {
                message: format!("at most {MAX_SESSIONS_PER_USER} WebSocket sessions per user"),
                retry_after: std::time::Duration::from_secs(5),
            });
        }
        *n += 1;
        Ok(Some(SocketSlot {
            user: name,
            sockets: self.sockets.clone(),
        }))
    }

    /// The signed cookie of session `id`. `secure` when the request came over HTTPS.
    pub fn session_cookie(&self, id: String, secure: bool) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key)
            .add(Cookie::new(SESSION_COOKIE, id));
        let mut cookie = jar.get(SESSION_COOKIE).expect("just added").clone();
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_path("/");
        cookie.set_secure(secure);
        cookie.set_max_age(actix_web::cookie::time::Duration::seconds(
            SESSION_TTL.as_secs() as i64,
        ));
        cookie
    }

    /// A cookie that ends the browser's session.
    pub fn expired_cookie(&self) -> Cookie<'static> {
        let mut cookie = Cookie::new(SESSION_COOKIE, "");
        cookie.set_path("/");
        cookie.make_removal();
        cookie
    }

    /// The session id of the request's cookie, if its signature holds.
    pub fn session_id(&self, req: &HttpRequest) -> Option<String> {
        let mut jar = CookieJar::new();
        jar.add_original(req.cookie(SESSION_COOKIE)?);
        jar.signed(&self.key)
            .get(SESSION_COOKIE)
            .map(|c| c.value().to_owned())
    }

    /// Refuses (429, with the time to wait) a sign-in as `name` from `address` while
    /// either has failed too often in the last minute. Counts nothing: only failures do
    /// ([`sign_in_failed`](Self::sign_in_failed)).
    pub fn sign_in_allowed(&self, name: &UserName, address: IpAddr) -> Result<(), ApiError> {
        let blocked = [
            self.logins
                .per_user_and_address
                .blocked(&format!("{name}@{address}")),
            self.logins.per_user.blocked(name.as_str()),
            self.logins.per_address.blocked(&address.to_string()),
        ];
        match blocked.into_iter().flatten().max() {
            Some(wait) => Err(ApiError::TooMany {
                message: "too many failed sign-in attempts; wait a minute".into(),
                retry_after: wait,
            }),
            None => Ok(()),
        }
    }

    /// Counts a failed sign-in as `name` from `address`.
    pub fn sign_in_failed(&self, name: &UserName, address: IpAddr) {
        self.logins
            .per_user_and_address
            .failed(&format!("{name}@{address}"));
        self.logins.per_user.failed(name.as_str());
        self.logins.per_address.failed(&address.to_string());
    }

    /// The address of the client that sent `req`: its peer, or, when the peer is one of
    /// `ROSTER_TRUSTED_PROXIES`, the last address of `X-Forwarded-For` that is not a
    /// trusted proxy (what a client sends itself comes first, so it is never believed).
    pub fn client_address(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|a| a.trim().parse::<IpAddr>())
            .collect::<Vec<_>>();
        for hop in forwarded.into_iter().rev() {
            match hop {
                Ok(ip) if self.trusted_proxies.contains(&ip) => continue,
                Ok(ip) => return ip,
                // An unreadable hop: nothing before it can be trusted.
                Err(_) => return peer,
            }
        }
        peer
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Access control is off: anyone may do anything, and owns nothing.
    Open,
    User(User),
}

impl Caller {
    /// The name recorded as the creator of what this caller makes.
    pub fn created_by(&self) -> Option<String> {
        match self {
            Caller::Open => None,
            Caller::User(u) => Some(u.name.to_string()),
        }
    }

    /// Whether the caller sees everyone's jobs and schedules.
    pub fn sees_all(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::User(u) => u.role == Role::Admin,
        }
    }

    /// The creator a listing is limited to: `None` for those who see all.
    pub fn owner_filter(&self) -> Option<String> {
        match self.sees_all() {
            true => None,
            false => self.created_by(),
        }
    }

    /// Whether the caller may see (and act on) what `created_by` created.
    pub fn may_see(&self, created_by: Option<&str>) -> bool {
        self.sees_all() || (created_by.is_some() && self.created_by().as_deref() == created_by)
    }

    /// Refuses callers that are not admins (403).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.sees_all() {
            true => Ok(()),
            false => Err(ApiError::Forbidden("only an admin may do this".into())),
        }
    }

    /// The signed-in user (401 when access control is off and there is none).
    pub fn user(&self) -> Result<&User, ApiError> {
        match self {
            Caller::User(u) => Ok(u),
            Caller::Open => Err(ApiError::Unauthorized),
        }
    }
}

/// What a request proved who it is with, kept by a live stream to check it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API token (`Authorization: Bearer`).
    Token(String),
    /// The id of a browser's session (from its signed cookie).
    Session(String),
}

impl Access {
    /// The credential a request carries: its bearer token, else its session cookie's id
    /// if the signature holds.
    pub fn credential(&self, req: &HttpRequest) -> Option<Credential> {
        bearer(req)
            .map(Credential::Token)
            .or_else(|| self.session_id(req).map(Credential::Session))
    }

    /// The caller `credential` names; 401 without one that works (with access control off,
    /// everyone is [`Caller::Open`]).
    pub async fn identify(
        &self,
        pool: &Pool,
        credential: Option<Credential>,
    ) -> Result<Caller, ApiError> {
        if !self.required() {
            return Ok(Caller::Open);
        }
        let Some(credential) = credential else {
            return Err(ApiError::Unauthorized);
        };
        let pool = pool.clone();
        let rejected = ApiError::CredentialRejected(match &credential {
            Credential::Token(_) => "this API token is not valid (revoked, or never issued)",
            Credential::Session(_) => "your session has ended; sign in again",
        });
        let reader = pool.clone();
        let found = web::block(move || -> Result<_, ApiError> {
            let conn = &mut *reader.get()?;
            Ok(match &credential {
                Credential::Token(token) => token::authenticate(conn, token)?
                    .map(|(user, stale)| (user, stale.then(|| token.clone()))),
                Credential::Session(id) => session::user(conn, id)?.map(|user| (user, None)),
            })
        })
        .await??;
        let Some((user, stale_token)) = found else {
            return Err(rejected);
        };
        if let Some(token) = stale_token {
            // Off the request path: the request does not wait for (SQLite's) write lock.
            actix_web::rt::spawn(async move {
                let noted = web::block(move || -> anyhow::Result<()> {
                    Ok(token::note_use(&mut *pool.get()?, &token)?)
                })
                .await;
                if let Ok(Err(e)) = noted {
                    log::debug!("could not note a token's use: {e:#}");
                }
            });
        }
        Ok(Caller::User(user))
    }

    /// The viewer of a live stream opened with `credential` (401 without one that works).
    /// It watches revocations from before the credential is checked, so none made in
    /// between is missed.
    pub async fn viewer(
        &self,
        pool: &Pool,
        credential: Option<Credential>,
    ) -> Result<Viewer, ApiError> {
        let revocations = self.revocations.subscribe();
        let caller = self.identify(pool, credential.clone()).await?;
        Ok(Viewer {
            caller,
            credential,
            revocations,
            unsure: false,
        })
    }

    /// Watches, for as long as this process runs, the mark every revocation changes (in
    /// any process: it is in the database), and tells this process's viewers when it
    /// changes (and, with `ROSTER_AUTH=auto`, turns signing in on once a user exists). One
    /// read a second for the whole process, however many streams are open.
    pub fn watch_revocations(&self, pool: Pool) {
        let sender = self.revocations.clone();
        let access = self.clone();
        actix_web::rt::spawn(async move {
            let mut seen: Option<Option<String>> = None;
            let mut tick = actix_web::rt::time::interval(REVOCATION_POLL);
            loop {
                tick.tick().await;
                let pool = pool.clone();
                let auto = access.setting == AuthSetting::Auto;
                let read = web::block(move || -> anyhow::Result<_> {
                    let conn = &mut *pool.get()?;
                    let mark = revocation::revocations(conn)?;
                    // With ROSTER_AUTH=auto, whether any user exists decides; creating or
                    // removing one is seen within a poll.
                    let users = match auto {
                        true => Some(user::count(conn)? > 0),
                        false => None,
                    };
                    Ok((mark, users))
                })
                .await;
                let Ok(Ok((mark, users))) = read else {
                    // The database is away: nothing can be checked until it is back.
                    continue;
                };
                if let Some(users) = users {
                    let now = access.setting.required(&access.bind, users);
                    if access.required.swap(now, Ordering::SeqCst) != now {
                        log::warn!(
                            "access (ROSTER_AUTH=auto): signing in is now {}",
                            if now {
                                "required: a user exists"
                            } else {
                                "off: no user is left"
                            }
                        );
                    }
                }
                // The first read has nothing to compare with: streams opened before it
                // check once, in case a revocation came first.
                if seen.as_ref().is_none_or(|s| *s != mark) {
                    sender.send_modify(|n| *n += 1);
                }
                seen = Some(mark);
            }
        });
    }
}

/// How often a process looks for revocations made anywhere.
pub const REVOCATION_POLL: Duration = Duration::from_secs(1);

/// Who watches a live stream (WebSocket or SSE): the caller it was opened by, and the
/// credential to check again whenever some credential is revoked or some user's rights
/// change. A stream whose viewer is no longer the same caller (signed out, password
/// changed, demoted, removed, token revoked) is closed; its client reconnects as whoever
/// it is now.
#[derive(Debug)]
pub struct Viewer {
    pub caller: Caller,
    credential: Option<Credential>,
    revocations: tokio::sync::watch::Receiver<u64>,
    /// The last check could not tell (the database away): check again.
    unsure: bool,
}

impl Viewer {
    /// Whether something was revoked since the last call, or the last check could not
    /// tell: time to [`recheck`](Self::recheck). In memory, so a stream may ask as often
    /// as it likes.
    pub fn needs_check(&mut self) -> bool {
        let changed = self.revocations.has_changed().unwrap_or(false);
        if changed {
            self.revocations.mark_unchanged();
        }
        changed || std::mem::take(&mut self.unsure)
    }

    /// Records what a [`Recheck`] found: `Some(still)`, or `None` when it could not tell
    /// (then [`needs_check`](Self::needs_check) says so at the next look).
    pub fn checked(&mut self, found: Option<bool>) -> bool {
        self.unsure = found.is_none();
        found.unwrap_or(true)
    }

    /// The check of this viewer's credential, to run apart from the stream's actor.
    pub fn recheck(&self) -> Recheck {
        Recheck {
            caller: self.caller.clone(),
            credential: self.credential.clone(),
        }
    }
}

/// A check of whether a credential still names the same caller, with the same rights.
#[derive(Debug, Clone)]
pub struct Recheck {
    caller: Caller,
    credential: Option<Credential>,
}

impl Recheck {
    /// `Some(still the same caller)`, or `None` when it cannot be told now (the database
    /// away: the stream stays open and is checked again at its next look).
    pub async fn run(self, access: &Access, pool: &Pool) -> Option<bool> {
        match access.identify(pool, self.credential).await {
            Ok(now) => Some(now == self.caller),
            Err(ApiError::Unauthorized | ApiError::CredentialRejected(_)) => Some(false),
            Err(_) => None,
        }
    }
}

/// The bearer token of a request, if it has one.
fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}
