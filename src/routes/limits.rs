//! Browser safety and request bounds, checked once for every request by [`guard`] (a
//! middleware) rather than route by route:
//!
//! - the `Host` header must name an allowed host (`ROSTER_ALLOWED_HOSTS`), else 400: a
//!   page on a rebound DNS name cannot talk to the service as if it were its own;
//! - an unsafe request (anything but GET, HEAD, OPTIONS, TRACE) that carries an `Origin`
//!   must come from the service's own origin or one of `ROSTER_ALLOWED_ORIGINS`, else
//!   403, whatever its content type and body: browsers send Origin on every cross-site
//!   POST, scripts (curl) send none and are unaffected;
//! - a POST, PUT or PATCH that names a content type, or has a body, must be JSON (the
//!   upload route also takes its file types), else 415;
//! - a request body must arrive whole within `ROSTER_BODY_TIMEOUT_SECS` (plus a second per
//!   64 KiB received, so that a large upload on a slow link is not cut), else 408.
//!
//! Also here: the free disk space check that exports and imports pass before they are
//! accepted.

use std::io;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, Method, Version};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage as _, HttpRequest, ResponseError};
use futures_util::StreamExt;

use crate::config::{normalized_origin, Settings};
use crate::error::ApiError;

/// The route that takes a file (CSV, NDJSON) as its body instead of JSON; it checks the
/// file's type itself.
pub const UPLOAD_PATH: &str = "/api/imports";

/// A request's head (line and headers) not received whole within this is answered 408 and
/// the connection closed (actix-web's `client_request_timeout`).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may linger after the response while the client closes it.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// `ROSTER_MAX_CONNECTIONS` spread over the HTTP workers (actix counts per worker; it starts
/// one per available CPU): beyond it new connections wait in the listen backlog.
pub fn connections_per_worker(settings: &Settings) -> usize {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    (settings.max_connections as usize).div_ceil(workers).max(1)
}

/// Probes that answer on any Host: they tell only whether the process is up, and
/// orchestrators call them by the pod's address, which no one lists as a host name.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// Host names always allowed unless `ROSTER_ALLOWED_HOSTS` says otherwise.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Splits `host[:port]` (with `[v6]` brackets kept) into its lowercased host and port.
fn split_host(raw: &str) -> (String, Option<&str>) {
    let raw = raw.trim();
    let (host, port) = match raw.rfind(':') {
        // A bare IPv6 address has colons but no brackets: it has no port.
        Some(i) if !raw[..i].contains(':') || raw[..i].ends_with(']') => {
            (&raw[..i], Some(&raw[i + 1..]))
        }
        _ => (raw, None),
    };
    (host.to_ascii_lowercase(), port)
}

/// Who may talk to the service: the hosts it answers to and the origins it trusts.
#[derive(Debug, Clone)]
pub struct Policy {
    hosts: Vec<String>,
    origins: Vec<String>,
    body_timeout: Duration,
}

impl Policy {
    pub fn from_settings(settings: &Settings) -> Self {
        let hosts = if settings.allowed_hosts.is_empty() {
            let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
            let ip = settings.bind.ip();
            if ip.is_unspecified() {
                log::warn!(
                    "bound to {ip} with ROSTER_ALLOWED_HOSTS unset: only requests for \
                     localhost, 127.0.0.1 and [::1] are answered; set ROSTER_ALLOWED_HOSTS \
                     to the names clients use"
                );
            } else {
                hosts.push(match ip {
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                });
            }
            hosts
        } else {
            settings.allowed_hosts.clone()
        };
        // Parsed (normalized) by `parse_allowed_origin`, as settings are.
        let origins = settings.allowed_origins.clone();
        Self {
            hosts,
            origins,
            body_timeout: settings.body_timeout(),
        }
    }

    /// Whether a `Host` header value names a host this service answers to.
    pub fn host_allowed(&self, raw: &str) -> bool {
        let (host, port) = split_host(raw);
        if host.is_empty() {
            return false;
        }
        self.hosts.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = split_host(entry);
            if entry_port.is_some() && entry_port != port {
                return false;
            }
            match name.strip_prefix('.') {
                Some(domain) => host == domain || host.ends_with(&name),
                None => host == name,
            }
        })
    }

    /// Whether `origin` is the service's own (the scheme and the request's allowed
    /// `host`) or one of the allowed origins.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        if self.origins.iter().any(|o| o == "*") {
            return true;
        }
        let Some(origin) = normalized_origin(origin) else {
            return false; // "null" (sandboxed frames, file: pages) and garbage
        };
        if self.origins.contains(&origin) {
            return true;
        }
        let Some(host) = host.filter(|h| self.host_allowed(h)) else {
            return false;
        };
        ["http", "https"].iter().any(|scheme| {
            normalized_origin(&format!("{scheme}://{host}")).as_deref() == Some(&origin)
        })
    }

    /// The checks every request passes before it reaches a handler.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let host = request_host(req);
        let probe =
            matches!(*req.method(), Method::GET | Method::HEAD) && PROBES.contains(&req.path());
        match host {
            _ if probe => {}
            Some(h) if self.host_allowed(h) => {}
            Some(_) => {
                return Err(ApiError::Malformed(
                    "this Host is not served here (see ROSTER_ALLOWED_HOSTS)".into(),
                ))
            }
            None if req.version() <= Version::HTTP_10 => {}
            None => return Err(ApiError::Malformed("a Host header is required".into())),
        }
        if !is_safe(req.method()) {
            if let Some(origin) = req.headers().get(header::ORIGIN) {
                let origin = origin.to_str().unwrap_or_default();
                if !self.origin_allowed(origin, host) {
                    return Err(ApiError::Forbidden(
                        "cross-origin requests that change data are refused (see ROSTER_ALLOWED_ORIGINS)"
                            .into(),
                    ));
                }
            }
        }
        if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
            check_content_type(req)?;
        }
        Ok(())
    }
}

/// The host the client asked for: the `Host` header (HTTP/1.1), or the URI's authority
/// (HTTP/2). Never a forwarding header, which any client can set.
fn request_host(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether the request says it has a body (a non-zero length, or chunks).
fn has_body(req: &HttpRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// A body, or a content type, must be JSON (or, on the upload route, the upload's type,
/// which the route checks). A request with neither (`curl -XPOST`) passes.
fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let upload = req.path() == UPLOAD_PATH;
    let expected = if upload {
        "text/csv or application/x-ndjson"
    } else {
        "application/json"
    };
    let Some(raw) = req.headers().get(header::CONTENT_TYPE) else {
        return if has_body(req) {
            Err(ApiError::UnsupportedMediaType(expected))
        } else {
            Ok(())
        };
    };
    let mime = raw
        .to_str()
        .ok()
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .ok_or(ApiError::UnsupportedMediaType(expected))?;
    let json = mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON);
    if json || upload {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(expected))
    }
}

/// The middleware: refuses what [`Policy::check`] refuses, and puts a deadline on the body.
pub async fn guard<B: MessageBody>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let policy = req
        .app_data::<web::Data<Policy>>()
        .expect("the app registers its limits::Policy")
        .clone();
    if let Err(e) = policy.check(req.request()) {
        let response = e.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    if has_body(req.request()) {
        let body = req.take_payload();
        req.set_payload(with_deadline(body, policy.body_timeout));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// The slowest a body may arrive beyond its deadline's start (bytes per second): each
/// such amount received moves the deadline a second later.
pub const MIN_BODY_RATE: u64 = 64 * 1024;

/// Marks the error a body stream ends with when its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time ({0:?}, plus a second per 64 KiB)")]
struct BodyTimedOut(Duration);

/// `body`, ending with a timed-out error once `limit` has passed since now, plus a second
/// for every [`MIN_BODY_RATE`] bytes received: a large upload on a slow link gets the time
/// it needs, a trickle does not.
fn with_deadline(body: Payload, limit: Duration) -> Payload {
    let start = tokio::time::Instant::now();
    let stream = futures_util::stream::unfold(Some((body, 0u64)), move |state| async move {
        let (mut body, received) = state?;
        let deadline =
            start + limit + Duration::from_secs_f64(received as f64 / MIN_BODY_RATE as f64);
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                let received = received + chunk.len() as u64;
                Some((Ok(chunk), Some((body, received))))
            }
            Ok(Some(Err(e))) => Some((Err(e), None)),
            Ok(None) => None,
            Err(_) => {
                let e = io::Error::new(io::ErrorKind::TimedOut, BodyTimedOut(limit));
                Some((Err(PayloadError::Io(e)), None))
            }
        }
    });
    Payload::Stream {
        payload: Box::pin(stream),
    }
}

/// The API error for a body that could not be read: 408 when its deadline passed.
pub fn body_error(e: PayloadError) -> ApiError {
    match &e {
        PayloadError::Io(io) if io.kind() == io::ErrorKind::TimedOut => {
            ApiError::Timeout(io.to_string())
        }
        _ => ApiError::Malformed(format!("could not read the body: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_allowed_host, parse_allowed_origin};

    fn policy(hosts: &[&str], origins: &[&str]) -> Policy {
        let mut s = Settings::defaults();
        s.allowed_hosts = hosts
            .iter()
            .map(|h| parse_allowed_host(h).unwrap())
            .collect();
        s.allowed_origins = origins
            .iter()
            .map(|o| parse_allowed_origin(o).unwrap())
            .collect();
        Policy::from_settings(&s)
    }

    #[test]
    fn default_hosts_are_the_loopback_names_and_the_bind_address_with_any_port() {
        let p = policy(&[], &[]);
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:8080",
            "LOCALHOST",
        ] {
            assert!(p.host_allowed(ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8080",
            "localhost.evil",
            "",
            ":80",
        ] {
            assert!(!p.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn host_entries_name_hosts_domains_ports_or_anything() {
        let p = policy(&["roster.example", ".corp.example", "10.0.0.5:8080"], &[]);
        assert!(p.host_allowed("roster.example:443"));
        assert!(p.host_allowed("corp.example"));
        assert!(p.host_allowed("a.b.corp.example:8080"));
        assert!(p.host_allowed("10.0.0.5:8080"));
        assert!(!p.host_allowed("10.0.0.5:8081"));
        assert!(!p.host_allowed("evilcorp.example"));
        assert!(
            !p.host_allowed("localhost"),
            "an explicit list replaces the default"
        );
        assert!(policy(&["*"], &[]).host_allowed("anything.example:1"));
        assert!(parse_allowed_host("http://x").is_err());
        assert!(parse_allowed_host("a*.b").is_err());
    }

    #[test]
    fn allowed_origins_are_scheme_host_and_port_only() {
        assert_eq!(
            parse_allowed_origin("HTTPS://App.Example:443/").unwrap(),
            "https://app.example"
        );
        assert_eq!(
            parse_allowed_origin("http://10.0.0.5:8080").unwrap(),
            "http://10.0.0.5:8080"
        );
        assert_eq!(parse_allowed_origin("*").unwrap(), "*");
        for bad in ["localhost:8080", "ftp://x", "https://x/path", "null", ""] {
            assert!(parse_allowed_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_origin_is_the_allowed_host_of_the_request() {
        let p = policy(&[], &["https://app.example"]);
        assert!(p.origin_allowed("http://localhost:8080", Some("localhost:8080")));
        assert!(p.origin_allowed("http://localhost", Some("localhost:80")));
        assert!(p.origin_allowed("https://app.example/", Some("localhost:8080")));
        assert!(!p.origin_allowed("http://localhost:8081", Some("localhost:8080")));
        assert!(!p.origin_allowed("http://evil.example", Some("localhost:8080")));
        // An origin matching an attacker-chosen Host is not the service's own.
        assert!(!p.origin_allowed("http://evil.example:8080", Some("evil.example:8080")));
        assert!(!p.origin_allowed("null", Some("localhost:8080")));
        assert!(policy(&[], &["*"]).origin_allowed("http://evil.example", None));
    }

    #[test]
    fn a_timed_out_body_is_408_and_other_read_errors_400() {
        let timed_out = PayloadError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            BodyTimedOut(Duration::from_secs(1)),
        ));
        assert_eq!(body_error(timed_out).status_code(), 408);
        assert_eq!(
            body_error(PayloadError::Incomplete(None)).status_code(),
            400
        );
    }
}
