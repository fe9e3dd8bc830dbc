//! Prometheus metrics of this host, served as text on `GET /metrics`:
//! - per route, from the gateway's request records (wasi:logging, context `request`; see
//!   components/gateway/src/access_log.rs): requests by status, 5xx errors, latency histogram;
//! - the host process itself (CPU, memory, threads, open files), from the `prometheus` crate's
//!   process collector;
//! - the wasmCloud host's own OpenTelemetry instruments (component invocations and their
//!   errors, wRPC handling time, instances), through the OpenTelemetry Prometheus exporter;
//! - the calls this host's components made over links, by target and path (`local`: to an
//!   instance on this host, in memory; `nats`: over the lattice), as the host counts them.
//!
//! The records reach us as tracing events of the host's wasi:logging implementation, so a
//! tracing layer reads them: no extra call on the request path.
use std::net::SocketAddr;

use prometheus::core::Collector as _;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// Where the host's wasi:logging implementation emits component log records.
pub const LOG_TARGET: &str = "wasmcloud_host::wasmbus::handler";
const REQUEST_CONTEXT: &str = "request";

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The host's OpenTelemetry instruments, apart: they carry their own `host` attribute (the
    /// host id), which would clash with `registry`'s constant `host` label.
    host_instruments: Registry,
    requests: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
}

#[derive(serde::Deserialize)]
struct Record {
    method: String,
    route: String,
    status: u16,
    duration_ms: f64,
}

impl Metrics {
    pub fn new(host_label: &str) -> anyhow::Result<Self> {
        let registry = Registry::new_custom(
            Some("pm".into()),
            Some([("host".to_string(), host_label.to_string())].into()),
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "Requests the gateway answered, by route and status",
            ),
            &["method", "route", "status"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "http_request_errors_total",
                "Requests answered with a 5xx status",
            ),
            &["method", "route"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from the gateway receiving a request to its answer",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        registry.register(Box::new(LinkCalls::new()?))?;
        Ok(Self {
            registry,
            host_instruments: Registry::new_custom(Some("pm".into()), None)?,
            requests,
            errors,
            duration,
        })
    }

    /// Makes the wasmCloud host's OpenTelemetry instruments part of this registry (as
    /// `pm_wasmcloud_host_*`). The host takes its meter from the global provider when it is
    /// created, so this must run before `Host::new`.
    pub fn include_host_instruments(&self) -> anyhow::Result<()> {
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(self.host_instruments.clone())
            // The host's scope and resource attributes (ids, OS, kernel) would ride on every
            // series; the `host` label already says whose they are.
            .without_scope_info()
            .without_target_info()
            .build()?;
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_reader(exporter)
            .build();
        opentelemetry::global::set_meter_provider(provider);
        Ok(())
    }

    /// Counts one gateway record (the JSON message of a `request` log record).
    fn observe(&self, message: &str) {
        let Ok(r) = serde_json::from_str::<Record>(message) else {
            return;
        };
        let status = r.status.to_string();
        self.requests
            .with_label_values(&[&r.method, &r.route, &status])
            .inc();
        if r.status >= 500 {
            self.errors.with_label_values(&[&r.method, &r.route]).inc();
        }
        self.duration
            .with_label_values(&[&r.method, &r.route])
            .observe(r.duration_ms / 1000.0);
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut families = self.registry.gather();
        families.extend(self.host_instruments.gather());
        let _ = TextEncoder::new().encode(&families, &mut out);
        out
    }

    /// Serves `GET /metrics` on `addr` until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "metrics on http://{addr}/metrics");
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    continue;
                };
                let metrics = self.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let n = socket.read(&mut request).await.unwrap_or(0);
                    let (status, body) = if request[..n].starts_with(b"GET /metrics ") {
                        ("200 OK", metrics.render())
                    } else {
                        (
                            "404 Not Found",
                            b"only GET /metrics is served here\n".to_vec(),
                        )
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                });
            }
        });
        Ok(())
    }
}

/// Picks the `context` and `message` fields out of a log event.
#[derive(Default)]
struct Fields {
    context: Option<String>,
    message: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "context" => self.context = Some(value.to_string()),
            "message" => self.message = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // The host logs the message as `"{message}"`, which arrives as fmt::Arguments.
        match field.name() {
            "context" => self.context = Some(format!("{value:?}").trim_matches('"').to_string()),
            "message" => self.message = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Metrics {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != LOG_TARGET {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.context.as_deref() == Some(REQUEST_CONTEXT) {
            if let Some(message) = fields.message {
                self.observe(&message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_counts_once_and_a_5xx_is_an_error() {
        let metrics = Metrics::new("1").unwrap();
        metrics.observe(
            r#"{"request_id":"r","method":"GET","route":"/health","status":200,"duration_ms":1.2}"#,
        );
        metrics.observe(
            r#"{"request_id":"s","method":"GET","route":"/ready","status":503,"duration_ms":3.0}"#,
        );
        metrics.observe("not a record");
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains(
                r#"pm_http_requests_total{host="1",method="GET",route="/health",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"pm_http_request_errors_total{host="1",method="GET",route="/ready"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"pm_http_request_duration_seconds_bucket{host="1",method="GET",route="/health",le="0.0025"} 1"#), "{text}");
    }
}

/// `link_calls_total{target, path}`: read from the host's own counts at each scrape.
struct LinkCalls {
    opts: Opts,
    desc: Vec<prometheus::core::Desc>,
}

impl LinkCalls {
    const LABELS: [&'static str; 2] = ["target", "path"];

    fn new() -> anyhow::Result<Self> {
        let opts = Opts::new(
            "link_calls_total",
            "Calls this host's components made over links, by target id and path (local: in \
             memory to an instance on this host; nats: over the lattice)",
        );
        let desc = IntCounterVec::new(opts.clone(), &Self::LABELS)?
            .desc()
            .into_iter()
            .cloned()
            .collect();
        Ok(Self { opts, desc })
    }
}

impl prometheus::core::Collector for LinkCalls {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Ok(counts) = IntCounterVec::new(self.opts.clone(), &Self::LABELS) else {
            return Vec::new();
        };
        for (target, path, calls) in wasmcloud_host::wasmbus::link_calls() {
            counts.with_label_values(&[&target, path]).inc_by(calls);
        }
        counts.collect()
    }
}
