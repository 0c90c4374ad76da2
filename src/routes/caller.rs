//! The extractors of who is asking: [`Caller`] for every guarded handler, [`Viewer`] for
//! the live streams (which keep the credential to check it again).

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

use super::AppState;
use crate::access::{Caller, Credential, Viewer};
use crate::error::ApiError;

/// The application's state and the credential `req` carries, read before the request is
/// left behind (an extractor's future outlives its borrow of the request).
fn asked(req: &HttpRequest) -> Result<(web::Data<AppState>, Option<Credential>), ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no application state"))?;
    let credential = state.access.credential(req);
    Ok((state, credential))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let asked = asked(req);
        Box::pin(async move {
            let (state, credential) = asked?;
            state.access.identify(&state.pool, credential).await
        })
    }
}

impl FromRequest for Viewer {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let asked = asked(req);
        Box::pin(async move {
            let (state, credential) = asked?;
            state.access.viewer(&state.pool, credential).await
        })
    }
}
