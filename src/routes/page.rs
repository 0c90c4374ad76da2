//! The web page: `GET /`, its stylesheet and its script, compiled into the binary.
//!
//! The files live under `static/` and need no build step: the script is plain ES modules
//! under `static/js/`, `main.js` the entry (`<script type="module">`) that imports the
//! rest by relative path. Each file is served with an `ETag` (its SHA-256) and
//! `Cache-Control: no-cache`, so a browser revalidates and gets a cheap `304` until the
//! binary changes. The charting library (uPlot 1.6.32, MIT, its `dist/uPlot.iife.min.js`
//! and `dist/uPlot.min.css` from npm) is vendored under `static/vendor/` with its licence
//! and served the same way: nothing comes from a CDN.
//!
//! Only the files named in [`SCRIPTS`] and [`VENDOR`] are served: a requested name is
//! looked up in its table, never joined to a path, so any other name (`..`, an empty one,
//! a module not listed) is the API's 404.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("../../static/index.html");
const APP_CSS: &str = include_str!("../../static/app.css");
const UPLOT_JS: &str = include_str!("../../static/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../static/vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../../static/vendor/uPlot.LICENSE");

/// What the page may load and connect to: itself only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One static file: its body, content type and entity tag.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Self {
        Self {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.body.as_bytes());
            format!("\"{}\"", hex::encode(&digest[..12]))
        })
    }

    /// The file, or `304 Not Modified` when the browser already has this version.
    fn respond(&self, req: &HttpRequest) -> HttpResponse {
        let etag = self.etag();
        let fresh = req
            .headers()
            .get_all(header::IF_NONE_MATCH)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/") == etag
            });
        let mut response = if fresh {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        response
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        if fresh {
            return response.finish();
        }
        response
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            ))
            .body(self.body)
    }
}

static INDEX: Asset = Asset::new(INDEX_HTML, "text/html; charset=utf-8");
static CSS: Asset = Asset::new(APP_CSS, "text/css; charset=utf-8");

/// A script's content type (ES modules included).
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// One module of the page: its name under `/static/js/` is its file's under `static/js/`.
macro_rules! module {
    ($name:literal) => {
        (
            $name,
            Asset::new(include_str!(concat!("../../static/js/", $name)), JAVASCRIPT),
        )
    };
}

/// The page's modules, and the only files `/static/js/` serves. `main.js` is the entry;
/// a test checks that every module another imports is listed, and every one listed is
/// imported.
static SCRIPTS: [(&str, Asset); 18] = [
    module!("main.js"),
    module!("api.js"),
    module!("live.js"),
    module!("signin.js"),
    module!("students.js"),
    module!("job-forms.js"),
    module!("jobs-list.js"),
    module!("job-detail.js"),
    module!("workers.js"),
    module!("activity.js"),
    module!("schedules.js"),
    module!("jobs.js"),
    module!("job.js"),
    module!("job-show.js"),
    module!("job-actions.js"),
    module!("feature.js"),
    module!("format.js"),
    module!("dom.js"),
];

static VENDOR: [(&str, Asset); 3] = [
    ("uPlot.iife.min.js", Asset::new(UPLOT_JS, JAVASCRIPT)),
    (
        "uPlot.min.css",
        Asset::new(UPLOT_CSS, "text/css; charset=utf-8"),
    ),
    (
        "uPlot.LICENSE",
        Asset::new(UPLOT_LICENSE, "text/plain; charset=utf-8"),
    ),
];

/// `GET /`: the page.
pub async fn index(req: HttpRequest) -> HttpResponse {
    let mut response = INDEX.respond(&req);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// `GET /static/app.css`.
pub async fn app_css(req: HttpRequest) -> HttpResponse {
    CSS.respond(&req)
}

/// `GET /static/js/{file}`: one of the page's modules, or 404.
pub async fn script(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&SCRIPTS, &file, &req)
}

/// `GET /static/vendor/{file}`: a vendored library's file, or 404.
pub async fn vendor(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&VENDOR, &file, &req)
}

/// The file of `table` named `file`, or the API's 404.
fn serve(table: &[(&str, Asset)], file: &str, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    table
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, asset)| asset.respond(req))
        .ok_or(ApiError::NotFound("file"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use actix_web::http::header::HeaderName;
    use actix_web::http::StatusCode;
    use actix_web::test::TestRequest;

    fn header(response: &HttpResponse, name: HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn module(file: &str) -> impl std::future::Future<Output = Result<HttpResponse, ApiError>> {
        script(
            TestRequest::get().to_http_request(),
            web::Path::from(file.to_owned()),
        )
    }

    /// The modules a module imports: every `'./name.js'` it names.
    fn imports(body: &str) -> Vec<&str> {
        body.split("'./")
            .skip(1)
            .filter_map(|rest| rest.split_once('\'').map(|(name, _)| name))
            .collect()
    }

    #[actix_web::test]
    async fn the_page_is_served_as_html_with_its_policy() {
        let response = index(TestRequest::get().uri("/").to_http_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(header(&response, header::CACHE_CONTROL), "no-cache");
        let policy = header(&response, header::CONTENT_SECURITY_POLICY);
        assert!(policy.contains("default-src 'self'") && policy.contains("script-src 'self';"));
        let body = to_bytes(response.into_body()).await.unwrap();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(body.contains(r#"<script type="module" src="/static/js/main.js"></script>"#));
        assert!(body.contains("/static/app.css"));
    }

    #[actix_web::test]
    async fn assets_have_their_content_types() {
        let css = app_css(TestRequest::get().to_http_request()).await;
        assert_eq!(
            header(&css, header::CONTENT_TYPE),
            "text/css; charset=utf-8"
        );
        for (name, _) in &SCRIPTS {
            let js = module(name).await.unwrap();
            assert_eq!(js.status(), StatusCode::OK, "{name}");
            assert_eq!(
                header(&js, header::CONTENT_TYPE),
                "text/javascript; charset=utf-8",
                "{name}"
            );
            assert_eq!(header(&js, header::CACHE_CONTROL), "no-cache", "{name}");
            assert_eq!(header(&js, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert!(!header(&js, header::ETAG).is_empty(), "{name}");
        }
    }

    #[actix_web::test]
    async fn the_modules_served_are_those_the_page_imports() {
        let listed: Vec<&str> = SCRIPTS.iter().map(|(name, _)| *name).collect();
        let mut imported = vec!["main.js"];
        for (name, asset) in &SCRIPTS {
            for other in imports(asset.body) {
                assert!(
                    listed.contains(&other),
                    "{name} imports {other}, not served"
                );
                imported.push(other);
            }
        }
        for name in &listed {
            assert!(
                imported.contains(name),
                "{name} is served but nothing imports it"
            );
        }
    }

    #[actix_web::test]
    async fn nothing_but_the_listed_modules_is_served_under_js() {
        for other in [
            "app.js",
            "x.js",
            "../main.js",
            "..%2fmain.js",
            "main.js/",
            "Main.js",
            "main",
            "",
            "uPlot.iife.min.js",
            "../vendor/uPlot.iife.min.js",
        ] {
            assert!(
                matches!(module(other).await, Err(ApiError::NotFound(_))),
                "{other}"
            );
        }
    }

    #[actix_web::test]
    async fn the_vendored_chart_library_is_served_and_nothing_else_under_vendor() {
        let get = |file: &str| {
            let req = TestRequest::get().to_http_request();
            vendor(req, web::Path::from(file.to_owned()))
        };
        let js = get("uPlot.iife.min.js").await.unwrap();
        assert_eq!(js.status(), StatusCode::OK);
        assert_eq!(
            header(&js, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(header(&js, header::CACHE_CONTROL), "no-cache");
        let body = to_bytes(js.into_body()).await.unwrap();
        assert!(std::str::from_utf8(&body).unwrap().contains("var uPlot="));
        let css = get("uPlot.min.css").await.unwrap();
        assert_eq!(
            header(&css, header::CONTENT_TYPE),
            "text/css; charset=utf-8"
        );
        let license = get("uPlot.LICENSE").await.unwrap();
        let body = to_bytes(license.into_body()).await.unwrap();
        assert!(std::str::from_utf8(&body).unwrap().contains("MIT License"));
        for other in ["app.js", "main.js", "../app.js", "uPlot.js", ""] {
            assert!(get(other).await.is_err(), "{other}");
        }
    }

    #[actix_web::test]
    async fn a_browser_with_the_current_version_gets_not_modified() {
        let etag = SCRIPTS[0].1.etag().to_owned();
        let request = TestRequest::get()
            .insert_header((header::IF_NONE_MATCH, etag.as_str()))
            .to_http_request();
        let response = script(request, web::Path::from("main.js".to_owned()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&response, header::ETAG), etag);
        let body = to_bytes(response.into_body()).await.unwrap();
        assert!(body.is_empty());

        let stale = TestRequest::get()
            .insert_header((header::IF_NONE_MATCH, "\"something-else\""))
            .to_http_request();
        let response = script(stale, web::Path::from("main.js".to_owned()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // Each module has its own version.
        let tags: std::collections::HashSet<&str> =
            SCRIPTS.iter().map(|(_, asset)| asset.etag()).collect();
        assert_eq!(tags.len(), SCRIPTS.len());
    }
}
