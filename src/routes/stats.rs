//! `GET /api/stats?minutes=`: the jobs of the last minutes, minute by minute.

use actix_web::{web, HttpResponse};

use super::input::{self, Fields, Query};
use super::with_conn;
use crate::access::Caller;
use crate::error::ApiError;
use crate::models::stats::{self, MAX_MINUTES};
use crate::routes::AppState;

/// The window when the request names none.
pub const DEFAULT_MINUTES: u32 = 60;

/// `GET /api/stats?minutes=60` (1 to 1440): counts of the jobs the caller may see.
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    query: Query,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    fields.only_params(&query, &["minutes"]);
    let minutes = query
        .get("minutes")
        .and_then(|m| {
            let parsed = input::int_param(m).and_then(|m| {
                u32::try_from(m)
                    .ok()
                    .filter(|m| (1..=MAX_MINUTES).contains(m))
                    .ok_or_else(|| format!("must be an integer from 1 to {MAX_MINUTES}"))
            });
            fields.check("minutes", parsed)
        })
        .unwrap_or(DEFAULT_MINUTES);
    fields.finish()?;
    let owner = caller.owner_filter();
    let stats = with_conn(&state, move |conn| {
        Ok(stats::history(conn, minutes, owner.as_deref())?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(stats))
}
