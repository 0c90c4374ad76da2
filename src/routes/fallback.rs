//! What the route table leaves to one place, a middleware: HEAD answers wherever GET does
//! (GET's status and headers, no body), and a method a route does not take is a 405 in
//! the API's error shape, with the `Allow` header naming the methods it takes, and so is
//! the 416 that a download answers to a Range beyond its file. Every `/api/` response
//! (personal data: students, jobs, downloads, sessions) is `Cache-Control: no-store` and
//! `X-Content-Type-Options: nosniff`. (A path no
//! route matches is the app's default service, [`super::health::not_found`]: a 404 in the
//! same shape.)

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::ResponseError;

use crate::error::ApiError;

/// The middleware: routes HEAD as GET, and answers 405s in the API's shape.
pub async fn methods<B: MessageBody + 'static>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let head = req.method() == Method::HEAD;
    let personal = req.path().starts_with("/api/");
    if head {
        req.head_mut().method = Method::GET;
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    if res.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = allowed(res.headers().get(header::ALLOW));
        let (req, _) = res.into_parts();
        res = ServiceResponse::new(req, ApiError::MethodNotAllowed { allow }.error_response());
    } else if res.status() == StatusCode::RANGE_NOT_SATISFIABLE {
        // actix-files answers an unsatisfiable Range itself, with an empty body.
        let size = unsatisfied_size(res.headers().get(header::CONTENT_RANGE));
        let (req, _) = res.into_parts();
        res = ServiceResponse::new(req, ApiError::RangeNotSatisfiable { size }.error_response());
    }
    if personal {
        // Students, jobs, files and who is signed in: nothing a shared cache or a
        // browser's disk should keep, nor sniff into another type.
        let headers = res.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            header::HeaderValue::from_static("nosniff"),
        );
    }
    if head {
        // GET's Content-Length (or chunking) stays; the body is never produced, so a
        // download is not read and an event stream not opened for nothing.
        res = res.map_body(|_, body| BoxBody::new(NoBody(body.size())));
    }
    Ok(res)
}

/// The size a 416's `Content-Range: bytes */SIZE` names (0 when it names none).
fn unsatisfied_size(header: Option<&header::HeaderValue>) -> u64 {
    header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("bytes */"))
        .and_then(|size| size.trim().parse().ok())
        .unwrap_or(0)
}

/// The methods of a resource's 405 (actix lists those its routes take), HEAD added
/// wherever GET is.
fn allowed(header: Option<&header::HeaderValue>) -> String {
    let mut methods: Vec<String> = header
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect();
    if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
        methods.push("HEAD".into());
    }
    methods.join(", ")
}

/// A body of a known size that has nothing to send (the answer to HEAD).
struct NoBody(BodySize);

impl MessageBody for NoBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        self.0
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Infallible>>> {
        Poll::Ready(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_allowed_wherever_get_is() {
        let allow = |raw: &str| allowed(Some(&header::HeaderValue::from_str(raw).unwrap()));
        assert_eq!(allow("GET, DELETE"), "GET, DELETE, HEAD");
        assert_eq!(allow("POST"), "POST");
        assert_eq!(allow("GET,HEAD"), "GET, HEAD");
        assert_eq!(allowed(None), "");
    }

    #[test]
    fn a_416_keeps_the_size_its_file_has() {
        let size = |raw: &str| unsatisfied_size(Some(&header::HeaderValue::from_str(raw).unwrap()));
        assert_eq!(size("bytes */1234"), 1234);
        assert_eq!(size("bytes 0-1/1234"), 0);
        assert_eq!(unsatisfied_size(None), 0);
    }
}
