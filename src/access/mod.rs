//! Who is asking, and what they may see.
//!
//! - [`Access`] is the process's access policy: whether requests must be signed in
//!   (`ROSTER_AUTH`), the key session cookies are signed with, and the limiters of failed
//!   sign-ins.
//! - [`Caller`] is the extractor every guarded handler takes: the signed-in [`User`] (from
//!   a session cookie or an `Authorization: Bearer` token), or [`Caller::Open`] when access
//!   control is off. A request without valid credentials never reaches the handler: 401.
//! - Ownership: a member sees only what they created; an admin (and everyone, with access
//!   control off) sees all. Another member's job is "not found", not "forbidden", so that
//!   ids cannot be probed.

pub mod password;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Settings;
use crate::db::Pool;
use crate::domain::user::{Password, Role, UserName};
use crate::error::ApiError;
use crate::models::user::User;
use crate::models::{session, token, user};
use crate::startup::AppState;

/// The cookie of a signed-in browser.
pub const SESSION_COOKIE: &str = "roster_session";
/// How long a browser stays signed in.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Failed sign-ins allowed per minute, for one user name and for one address.
const LOGINS_PER_USER: u32 = 5;
const LOGINS_PER_ADDRESS: u32 = 20;
/// Limiter entries kept before stale ones are dropped (an attacker's random names).
const LIMITER_KEYS: usize = 100_000;

/// WebSocket sessions one user may hold open in one process.
pub const MAX_SESSIONS_PER_USER: usize = 64;

/// The access policy of this process.
#[derive(Clone)]
pub struct Access {
    /// Whether requests must be signed in.
    pub required: bool,
    key: Key,
    logins: Arc<Logins>,
    sockets: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
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
    per_user: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<String>,
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
            let hash = password::hash(&password);
            if user::update(&mut conn, &admin, Some(Role::Admin), Some(&hash))?.is_none() {
                user::insert(&mut conn, &admin, Role::Admin, &hash)?;
                log::info!("user admin created from ROSTER_ADMIN_PASSWORD");
            }
        }
        let required = settings.auth_required();
        if http && required && !settings.bind.ip().is_loopback() && user::count(&mut conn)? == 0 {
            return Err(Refused(format!(
                "ROSTER_AUTH: roster on {} requires signing in, and there is no user yet: \
                 create one with `roster user add NAME --role admin`, or set ROSTER_ADMIN_PASSWORD",
                settings.bind
            ))
            .into());
        }
        let secret = match &settings.secret_key {
            Some(key) => key.clone(),
            None => session::setting_or_insert(&mut conn, "session_key", || {
                (0..4)
                    .map(|_| uuid::Uuid::new_v4().simple().to_string())
                    .collect()
            })?,
        };
        let per_minute = |n| Quota::per_minute(NonZeroU32::new(n).expect("non-zero"));
        Ok(Self {
            required,
            key: Key::derive_from(secret.as_bytes()),
            logins: Arc::new(Logins {
                per_user: RateLimiter::keyed(per_minute(LOGINS_PER_USER)),
                per_address: RateLimiter::keyed(per_minute(LOGINS_PER_ADDRESS)),
            }),
            sockets: Arc::default(),
        })
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

    /// Counts a sign-in attempt for `name` from `address`; refused (with the seconds to
    /// wait) past the limits.
    pub fn sign_in_allowed(&self, name: &str, address: &str) -> Result<(), ApiError> {
        for (limiter, key) in [
            (&self.logins.per_user, name),
            (&self.logins.per_address, address),
        ] {
            if limiter.len() > LIMITER_KEYS {
                limiter.retain_recent();
            }
            if let Err(not_until) = limiter.check_key(&key.to_owned()) {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                return Err(ApiError::TooMany {
                    message: "too many sign-in attempts; wait a minute".into(),
                    retry_after: wait,
                });
            }
        }
        Ok(())
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

/// The bearer token of a request, if it has one.
fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req);
        let session = state.as_ref().and_then(|s| s.access.session_id(req));
        Box::pin(async move {
            let state = state.ok_or_else(|| anyhow::anyhow!("no application state"))?;
            identify(&state, token, session).await
        })
    }
}

/// The caller a token or a session id names.
pub async fn identify(
    state: &AppState,
    token: Option<String>,
    session: Option<String>,
) -> Result<Caller, ApiError> {
    if !state.access.required {
        return Ok(Caller::Open);
    }
    if token.is_none() && session.is_none() {
        return Err(ApiError::Unauthorized);
    }
    let found = crate::routes::with_conn(state, move |conn| {
        Ok(match (token, session) {
            (Some(token), _) => token::authenticate(conn, &token)?,
            (None, Some(id)) => session::user(conn, &id)?,
            (None, None) => None,
        })
    })
    .await?;
    found.map(Caller::User).ok_or(ApiError::Unauthorized)
}
