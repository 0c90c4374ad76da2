//! `/api/session`, `/api/tokens` and `/api/users`: signing in and out, one's own API
//! tokens, and (for admins) the users.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::input::{self, Body, Fields};
use super::with_conn;
use crate::access::{password, Caller, SESSION_TTL};
use crate::domain::user::{Password, Role, UserName};
use crate::error::ApiError;
use crate::models::{session, token, user};
use crate::routes::AppState;

/// `POST /api/session {username, password}` → 204 and the session cookie.
pub async fn sign_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    fields.only(&body, &["username", "password"]);
    let name = body
        .get("username")
        .and_then(|n| fields.check("username", input::string(n).map(str::to_owned)));
    let name = fields.require("username", name);
    let given = body
        .get("password")
        .and_then(|p| fields.check("password", input::string(p).map(str::to_owned)));
    let given = fields.require("password", given);
    fields.finish()?;
    let (Some(name), Some(given)) = (name, given) else {
        unreachable!("required fields are checked");
    };
    // A name that no user can have is refused before anything is counted or read: the
    // throttle's keys stay valid names, bounded in length.
    let Ok(name) = UserName::parse(&name) else {
        return Err(ApiError::Unauthorized);
    };
    let address = state.access.client_address(&req);
    state.access.sign_in_allowed(&name, address)?;
    let tried = name.clone();
    let signed_in = with_conn(&state, move |conn| {
        let found = user::find_with_hash(conn, &name)?;
        // The same work whether or not the user exists: no enumeration by timing.
        let stored = found
            .as_ref()
            .map_or(password::decoy(), |(_, h)| h.as_str());
        let matches = password::verify(&given, stored);
        match found {
            Some((user, _)) if matches => Ok(Some(session::create(conn, &user.name, SESSION_TTL)?)),
            _ => Ok(None),
        }
    })
    .await?;
    let Some(id) = signed_in else {
        state.access.sign_in_failed(&tried, address);
        return Err(ApiError::Unauthorized);
    };
    let secure = req.connection_info().scheme() == "https";
    Ok(HttpResponse::NoContent()
        .cookie(state.access.session_cookie(id, secure))
        .finish())
}

/// `GET /api/session`: who is signed in (with access control off: nobody, and all may).
pub async fn whoami(caller: Caller) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(match &caller {
        Caller::Open => json!({"username": null, "role": "admin", "auth": "off"}),
        Caller::User(u) => json!({"username": u.name, "role": u.role, "auth": "required"}),
    }))
}

/// `DELETE /api/session`: signs this browser out.
pub async fn sign_out(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if let Some(id) = state.access.session_id(&req) {
        with_conn(&state, move |conn| Ok(session::delete(conn, &id)?)).await?;
    }
    Ok(HttpResponse::NoContent()
        .cookie(state.access.expired_cookie())
        .finish())
}

/// `PATCH /api/session/password {current, new}`: the signed-in user changes their own
/// password. Every session and token of theirs ends (whoever knew the old one is out);
/// this browser gets a fresh session, so it stays signed in.
pub async fn change_password(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let name = caller.user()?.name.clone();
    let mut fields = Fields::default();
    fields.only(&body, &["current", "new"]);
    let current = body
        .get("current")
        .and_then(|p| fields.check("current", input::string(p).map(str::to_owned)));
    let current = fields.require("current", current);
    let new = body
        .get("new")
        .and_then(|p| fields.check("new", input::string(p).and_then(Password::parse)));
    let new = fields.require("new", new);
    fields.finish()?;
    let (Some(current), Some(new)) = (current, new) else {
        unreachable!("required fields are checked");
    };
    if new.expose() == current {
        return Err(ApiError::invalid("new", "is your current password"));
    }
    let address = state.access.client_address(&req);
    state.access.sign_in_allowed(&name, address)?;
    let who = name.clone();
    let changed = with_conn(&state, move |conn| {
        let Some((_, stored)) = user::find_with_hash(conn, &who)? else {
            return Ok(None);
        };
        if !password::verify(&current, &stored) {
            return Ok(None);
        }
        user::update(conn, &who, None, Some(&password::hash(&new)))?;
        Ok(Some(session::create(conn, &who, SESSION_TTL)?))
    })
    .await?;
    let Some(id) = changed else {
        // A wrong current password counts as a failed sign-in.
        state.access.sign_in_failed(&name, address);
        return Err(ApiError::invalid("current", "is not your password"));
    };
    let secure = req.connection_info().scheme() == "https";
    Ok(HttpResponse::NoContent()
        .cookie(state.access.session_cookie(id, secure))
        .finish())
}

/// `GET /api/tokens[?user=NAME]`: the caller's tokens, or (an admin) any user's; never
/// their secrets.
pub async fn tokens(
    caller: Caller,
    state: web::Data<AppState>,
    query: input::Query,
) -> Result<HttpResponse, ApiError> {
    let me = caller.user()?.name.clone();
    let mut fields = Fields::default();
    fields.only_params(&query, &["user"]);
    let whose = query
        .get("user")
        .and_then(|raw| fields.check("user", UserName::parse(raw)));
    fields.finish()?;
    let whose = match whose {
        Some(other) if other != me => {
            caller.require_admin()?;
            other
        }
        _ => me,
    };
    let items = with_conn(&state, move |conn| {
        if user::find(conn, &whose)?.is_none() {
            return Err(ApiError::NotFound("user"));
        }
        Ok(token::list(conn, &whose)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

/// `POST /api/tokens {name}` → 201 with the token's secret, shown this once.
pub async fn create_token(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let owner = caller.user()?.name.clone();
    let mut fields = Fields::default();
    fields.only(&body, &["name"]);
    let label = body.get("name").and_then(|n| {
        let label = input::string(n).and_then(|n| {
            let n = n.trim();
            (!n.is_empty() && n.chars().count() <= 100 && !n.chars().any(char::is_control))
                .then(|| n.to_owned())
                .ok_or_else(|| "must be 1 to 100 characters".to_owned())
        });
        fields.check("name", label)
    });
    let label = fields.require("name", label);
    fields.finish()?;
    let label = label.expect("required");
    let cap = state.settings.max_tokens_per_user;
    let (view, secret) = with_conn(&state, move |conn| {
        if token::count(conn, &owner)? >= i64::from(cap) {
            return Err(ApiError::Conflict(format!(
                "you have {cap} API tokens (ROSTER_MAX_TOKENS_PER_USER); revoke one first"
            )));
        }
        Ok(token::create(conn, &owner, &label)?)
    })
    .await?;
    let mut body = serde_json::to_value(view).expect("serializes");
    body["token"] = secret.into();
    Ok(HttpResponse::Created().json(body))
}

/// `DELETE /api/tokens/{id}`: one of the caller's tokens, or (an admin) anyone's.
pub async fn delete_token(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let owner = (!caller.sees_all())
        .then(|| caller.user().map(|u| u.name.clone()))
        .transpose()?;
    let id = path.into_inner();
    let deleted = with_conn(&state, move |conn| {
        Ok(token::delete(conn, owner.as_ref(), &id)?)
    })
    .await?;
    match deleted {
        true => Ok(HttpResponse::NoContent().finish()),
        false => Err(ApiError::NotFound("token")),
    }
}

/// `GET /api/users` (admins).
pub async fn users(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let items = with_conn(&state, |conn| Ok(user::list(conn)?)).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

fn role_field(fields: &mut Fields, body: &Body) -> Option<Role> {
    body.get("role")
        .and_then(|r| fields.check("role", input::string(r).and_then(str::parse)))
}

fn password_field(fields: &mut Fields, body: &Body) -> Option<Password> {
    body.get("password")
        .and_then(|p| fields.check("password", input::string(p).and_then(Password::parse)))
}

/// `POST /api/users {name, password, role?}` (admins) → 201.
pub async fn create_user(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let mut fields = Fields::default();
    fields.only(&body, &["name", "password", "role"]);
    let name = body
        .get("name")
        .and_then(|n| fields.check("name", input::string(n).and_then(UserName::parse)));
    let name = fields.require("name", name);
    let role = role_field(&mut fields, &body).unwrap_or(Role::Member);
    let password = password_field(&mut fields, &body);
    let password = fields.require("password", password);
    fields.finish()?;
    let (Some(name), Some(password)) = (name, password) else {
        unreachable!("required fields are checked");
    };
    let created = with_conn(&state, move |conn| {
        let hash = password::hash(&password);
        match user::insert(conn, &name, role, &hash) {
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Err(ApiError::Conflict(format!(
                "there is already a user {name}"
            ))),
            other => Ok(other?),
        }
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/users/{}", created.name)))
        .json(created))
}

fn user_name(raw: &str) -> Result<UserName, ApiError> {
    UserName::parse(raw).map_err(|_| ApiError::NotFound("user"))
}

/// `PATCH /api/users/{name} {role?, password?}` (admins); a new password signs the user
/// out everywhere.
pub async fn change_user(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let name = user_name(&path)?;
    let mut fields = Fields::default();
    fields.only(&body, &["role", "password"]);
    let role = role_field(&mut fields, &body);
    let password = password_field(&mut fields, &body);
    fields.finish()?;
    let changed = with_conn(&state, move |conn| {
        let hash = password.as_ref().map(password::hash);
        Ok(user::update(conn, &name, role, hash.as_deref())?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(changed.ok_or(ApiError::NotFound("user"))?))
}

/// `DELETE /api/users/{name}` (admins): their tokens and sessions go; their jobs stay.
pub async fn delete_user(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let name = user_name(&path)?;
    let deleted = with_conn(&state, move |conn| Ok(user::delete(conn, &name)?)).await?;
    match deleted {
        true => Ok(HttpResponse::NoContent().finish()),
        false => Err(ApiError::NotFound("user")),
    }
}
