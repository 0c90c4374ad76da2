//! Prometheus metrics: counters and histograms updated where things happen (HTTP, the
//! workers, the event registry), and gauges read at scrape time (jobs by status and live
//! workers from the database, queue depth from the broker, sessions from the registry).
//!
//! The metrics are process-wide, like the process they describe. This is a leaf, like
//! `log`: everything may count, and `/metrics` (in `routes::metrics`) reads them.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub jobs: IntGaugeVec,
    pub job_duration: HistogramVec,
    pub jobs_in_flight: IntGauge,
    pub job_retries: IntCounter,
    pub queue_waiting: IntGauge,
    pub queue_pending: IntGauge,
    pub ws_sessions: IntGauge,
    pub workers_live: IntGauge,
    pub events_sent: IntCounter,
    pub events_coalesced: IntCounter,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new_custom(Some("roster".into()), None).expect("valid prefix");
        let buckets = vec![
            0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
        ];
        Self {
            http_requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new("http_requests_total", "HTTP requests by route and status"),
                    &["method", "route", "status"],
                )
                .unwrap(),
            ),
            http_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "HTTP request latency"),
                    &["route"],
                )
                .unwrap(),
            ),
            jobs: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("jobs", "Jobs in the database by kind and status"),
                    &["kind", "status"],
                )
                .unwrap(),
            ),
            job_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("job_duration_seconds", "Duration of job attempts run here")
                        .buckets(buckets),
                    &["kind", "outcome"],
                )
                .unwrap(),
            ),
            jobs_in_flight: register(
                &r,
                IntGauge::new("jobs_in_flight", "Jobs running in this process").unwrap(),
            ),
            job_retries: register(
                &r,
                IntCounter::new("job_retries_total", "Failed attempts scheduled for retry")
                    .unwrap(),
            ),
            queue_waiting: register(
                &r,
                IntGauge::new("queue_waiting", "Queued jobs due now, over every queue").unwrap(),
            ),
            queue_pending: register(
                &r,
                IntGauge::new(
                    "queue_pending",
                    "Queued jobs due later (delayed, or backing off), over every queue",
                )
                .unwrap(),
            ),
            ws_sessions: register(
                &r,
                IntGauge::new(
                    "websocket_sessions",
                    "Open WebSocket and event-stream (SSE) sessions",
                )
                .unwrap(),
            ),
            workers_live: register(
                &r,
                IntGauge::new(
                    "workers_live",
                    "Worker processes whose heartbeat is recent (all processes, from the database)",
                )
                .unwrap(),
            ),
            events_sent: register(
                &r,
                IntCounter::new(
                    "events_sent_total",
                    "Job events handed to WebSocket sessions",
                )
                .unwrap(),
            ),
            events_coalesced: register(
                &r,
                IntCounter::new(
                    "events_coalesced_total",
                    "Progress events replaced by newer ones for slow clients",
                )
                .unwrap(),
            ),
            registry: r,
        }
    }

    /// `method` from [`method_label`] and `route` from the route table (or "(unmatched)"):
    /// labels from fixed sets, whatever clients send.
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// Every metric, in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// A request method as a metric label: the standard ones by name, every other "other"
/// (a client may send any token as a method, and each label value is kept forever).
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
