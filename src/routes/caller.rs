//! The extractors of who is asking: [`Caller`] for every guarded handler, [`Viewer`] for
//! the live streams (which keep the credential to check it again).

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

use super::AppState;
use crate::access::{Caller, Viewer};
use crate::error::ApiError;

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let credential = state.as_ref().and_then(|s| s.access.credential(req));
        Box::pin(async move {
            let state = state.ok_or_else(|| anyhow::anyhow!("no application state"))?;
            state.access.identify(&state.pool, credential).await
        })
    }
}

impl FromRequest for Viewer {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let credential = state.as_ref().and_then(|s| s.access.credential(req));
        Box::pin(async move {
            let state = state.ok_or_else(|| anyhow::anyhow!("no application state"))?;
            state.access.viewer(&state.pool, credential).await
        })
    }
}
