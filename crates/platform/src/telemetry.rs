//! Logs, metrics and traces, set up once per process by one function.

use std::io::Write;
use std::sync::OnceLock;

use http::HeaderMap;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Span, Subscriber, span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Settings};

/// Buckets for request latencies, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for amounts of money, in the currency's units.
const AMOUNT_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// The process-wide metrics registry, rendered by the process's `/metrics`.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_amount".into()),
                    AMOUNT_BUCKETS,
                )
            })
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // A recorder installed earlier (by a test harness) keeps its place.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// What a metric counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric a service exports, declared when the service starts: its HELP
/// and TYPE lines are written from the first scrape on, and each label set
/// of `zeros` is there at zero before its first event, so that an alert can
/// tell "nothing happened" from "nobody exports this".
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Label sets known up front (`&[&[]]` for a metric without labels).
    pub zeros: &'static [&'static [(&'static str, &'static str)]],
}

impl Metric {
    pub const fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Self {
            name,
            kind,
            help,
            zeros: &[&[]],
        }
    }

    /// With its label sets known up front; none for labels known only as
    /// events come (a SKU, a route).
    pub const fn zeros(self, zeros: &'static [&'static [(&'static str, &'static str)]]) -> Self {
        Self { zeros, ..self }
    }
}

/// Describes `metrics` and registers their known label sets at zero; a
/// value already recorded stays as it is.
pub fn declare(metrics: &[Metric]) {
    metrics_handle();
    for metric in metrics {
        let labels = |set: &[(&'static str, &'static str)]| -> Vec<metrics::Label> {
            set.iter()
                .map(|&(k, v)| metrics::Label::new(k, v))
                .collect()
        };
        match metric.kind {
            Kind::Counter => {
                metrics::describe_counter!(metric.name, metric.help);
                for set in metric.zeros {
                    metrics::counter!(metric.name, labels(set)).increment(0);
                }
            }
            Kind::Gauge => {
                metrics::describe_gauge!(metric.name, metric.help);
                for set in metric.zeros {
                    metrics::gauge!(metric.name, labels(set)).increment(0.0);
                }
            }
            Kind::Histogram => {
                metrics::describe_histogram!(metric.name, metric.help);
                for set in metric.zeros {
                    let _registered = metrics::histogram!(metric.name, labels(set));
                }
            }
        }
    }
}

/// The metrics of the platform's own parts, which every service has: HTTP
/// and gRPC servers and clients, events, the database, caches, tokens.
pub const PLATFORM_METRICS: &[Metric] = &[
    Metric::new(
        "fault_flag_active",
        Kind::Gauge,
        "1 while a fault flag is switched on in this process (decision 0032), by flag.",
    )
    .zeros(crate::faults::FLAG_LABELS),
    Metric::new(
        "http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by service, method, route template and status.",
    )
    .zeros(&[]),
    Metric::new(
        "http_request_duration_seconds",
        Kind::Histogram,
        "Time to answer an HTTP request, in seconds, by service, method and route template.",
    )
    .zeros(&[]),
    Metric::new(
        "grpc_server_requests_total",
        Kind::Counter,
        "gRPC calls answered, by service, method and status code.",
    )
    .zeros(&[]),
    Metric::new(
        "grpc_server_request_duration_seconds",
        Kind::Histogram,
        "Time to answer a gRPC call, in seconds, by service and method.",
    )
    .zeros(&[]),
    Metric::new(
        "grpc_server_refused_total",
        Kind::Counter,
        "gRPC calls refused before their handler (no or bad service token, caller not allowed), by service and reason.",
    )
    .zeros(&[]),
    Metric::new(
        "grpc_client_requests_total",
        Kind::Counter,
        "gRPC calls made to a peer, by calling service, peer, method and status code (CIRCUIT_OPEN: not sent).",
    )
    .zeros(&[]),
    Metric::new(
        "grpc_client_duration_seconds",
        Kind::Histogram,
        "Time a peer took to answer one gRPC attempt, in seconds, by calling service, peer and method.",
    )
    .zeros(&[]),
    Metric::new(
        "grpc_client_circuit_open",
        Kind::Gauge,
        "1 while a service's circuit to a peer is open (calls fail at once), else 0, by calling service and peer; set at each call, so it stays 1 for a peer nobody calls until the next call tries it.",
    )
    .zeros(&[]),
    Metric::new(
        "events_published_total",
        Kind::Counter,
        "Events the outbox relay handed to the transport, by event type and transport.",
    )
    .zeros(&[]),
    Metric::new(
        "events_consumed_total",
        Kind::Counter,
        "Event deliveries handled, by consumer, event type and outcome (ok, error).",
    )
    .zeros(&[]),
    Metric::new(
        "events_refused_total",
        Kind::Counter,
        "Events a consumer refused unread (a source it does not trust, an interest it does not have), by consumer and reason.",
    )
    .zeros(&[]),
    Metric::new(
        "events_dead_lettered_total",
        Kind::Counter,
        "Events that failed every retry and were set aside as dead letters, by consumer.",
    )
    .zeros(&[]),
    Metric::new(
        "outbox_pending_events",
        Kind::Gauge,
        "Events written to a service's outbox and not yet published, by service, after the relay's last pass.",
    )
    .zeros(&[]),
    Metric::new(
        "db_transaction_retries_total",
        Kind::Counter,
        "Database transactions retried after a serialization failure or deadlock.",
    ),
    Metric::new(
        "jwks_fetches_total",
        Kind::Counter,
        "Fetches of identity's public keys (JWKS) to verify tokens.",
    ),
    Metric::new(
        "rate_limit_fallbacks_total",
        Kind::Counter,
        "Rate-limit decisions taken in memory because Redis did not answer, by setting.",
    )
    .zeros(&[]),
];

/// Keeps the trace exporter alive; flushes it when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs logging and tracing for the process. Call once from `main`.
///
/// Spans are exported from `info` up whatever `log.level` says, so that a
/// quiet log keeps its traces; the level filters log lines only.
pub fn init(settings: &Settings, process_name: &str) -> anyhow::Result<TelemetryGuard> {
    metrics_handle();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // `emporium-catalog` logs and traces as `catalog`; a line or span
    // inside a request or task span names the service of that span.
    let service = process_name
        .strip_prefix("emporium-")
        .unwrap_or(process_name);
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_owned())
            .build(),
    );
    if let Some(endpoint) = &settings.otel.endpoint {
        builder = builder.with_batch_exporter(PerServiceExporter::new(endpoint, service)?);
    }
    let provider = builder.build();
    let tracer = provider.tracer("emporium");
    let filter = EnvFilter::try_new(&settings.log.level)
        .map_err(|e| anyhow::anyhow!("configuration: log.level `{}`: {e}", settings.log.level))?;
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let registry = tracing_subscriber::registry().with(otel);
    let format = match settings.log.format {
        LogFormat::Auto if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            LogFormat::Pretty
        }
        LogFormat::Auto => LogFormat::Json,
        chosen => chosen,
    };
    let lines = LinesBy(filter);
    match format {
        LogFormat::Json | LogFormat::Auto => registry
            .with(
                JsonLogLayer::new(std::io::stdout)
                    .with_service(service)
                    .with_filter(lines),
            )
            .try_init()?,
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_filter(lines),
            )
            .try_init()?,
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// The log's filter: events by `log.level`; spans from `info` up whatever
/// it says, so that a `warn` line inside a request still carries the
/// request's fields and trace.
struct LinesBy(EnvFilter);

impl<S> tracing_subscriber::layer::Filter<S> for LinesBy
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &tracing::Metadata<'_>, cx: &Context<'_, S>) -> bool {
        if meta.is_span() {
            *meta.level() <= tracing::Level::INFO
        } else {
            tracing_subscriber::layer::Filter::enabled(&self.0, meta, cx)
        }
    }
}

/// Sends each span under the resource of the service it belongs to, named
/// by its `service` attribute (the process's own name for a span without
/// one): in `emporium up` one process runs every service, and a trace
/// shows each of them rather than one `emporium`. One HTTP client for all.
#[derive(Debug)]
struct PerServiceExporter {
    endpoint: String,
    client: reqwest::blocking::Client,
    process: String,
    resource: opentelemetry_sdk::Resource,
    exporters: std::sync::Mutex<
        std::collections::HashMap<String, std::sync::Arc<opentelemetry_otlp::SpanExporter>>,
    >,
}

impl PerServiceExporter {
    fn new(endpoint: &str, process: &str) -> anyhow::Result<Self> {
        // A blocking client may be neither built nor dropped on a runtime's
        // thread; the exporter's own thread drops it.
        let client = std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the trace exporter's HTTP client could not be built"))??;
        Ok(Self {
            endpoint: format!("{}/v1/traces", endpoint.trim_end_matches('/')),
            client,
            process: process.to_owned(),
            resource: opentelemetry_sdk::Resource::builder_empty().build(),
            exporters: Default::default(),
        })
    }

    fn exporter(
        &self,
        service: &str,
    ) -> Result<std::sync::Arc<opentelemetry_otlp::SpanExporter>, OTelSdkError> {
        let mut exporters = self
            .exporters
            .lock()
            .map_err(|_| OTelSdkError::InternalFailure("exporters poisoned".into()))?;
        if let Some(exporter) = exporters.get(service) {
            return Ok(exporter.clone());
        }
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(self.client.clone())
            .with_endpoint(self.endpoint.clone())
            .build()
            .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?;
        let attributes = self
            .resource
            .iter()
            .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone()));
        opentelemetry_sdk::trace::SpanExporter::set_resource(
            &mut exporter,
            &opentelemetry_sdk::Resource::builder_empty()
                .with_attributes(attributes)
                .with_service_name(service.to_owned())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.namespace",
                    "emporium",
                ))
                .build(),
        );
        let exporter = std::sync::Arc::new(exporter);
        exporters.insert(service.to_owned(), exporter.clone());
        Ok(exporter)
    }
}

impl opentelemetry_sdk::trace::SpanExporter for PerServiceExporter {
    async fn export(&self, batch: Vec<opentelemetry_sdk::trace::SpanData>) -> OTelSdkResult {
        let mut by_service: std::collections::BTreeMap<String, Vec<_>> = Default::default();
        for span in batch {
            let service = span
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "service")
                .map(|kv| kv.value.as_str().into_owned())
                .unwrap_or_else(|| self.process.clone());
            by_service.entry(service).or_default().push(span);
        }
        for (service, spans) in by_service {
            let exporter = self.exporter(&service)?;
            exporter.export(spans).await?;
        }
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        let exporters: Vec<_> = match self.exporters.lock() {
            Ok(exporters) => exporters.values().cloned().collect(),
            Err(_) => return Ok(()),
        };
        for exporter in exporters {
            let _ = exporter.shutdown_with_timeout(timeout);
        }
        Ok(())
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = resource.clone();
        if let Ok(exporters) = self.exporters.get_mut() {
            exporters.clear();
        }
    }
}

/// Makes `span` a child of the trace named by the `traceparent` header, if
/// any, and records the trace and span ids on it for the logs.
pub fn join_remote_trace(span: &Span, headers: &HeaderMap) {
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtract(headers)));
    join_trace(span, parent);
}

/// Same as [`join_remote_trace`], from a bare `traceparent` value (events).
pub fn join_traceparent(span: &Span, traceparent: Option<&str>) {
    let mut headers = HeaderMap::new();
    if let Some(value) = traceparent.and_then(|v| http::HeaderValue::from_str(v).ok()) {
        headers.insert("traceparent", value);
    }
    join_remote_trace(span, &headers);
}

fn join_trace(span: &Span, parent: opentelemetry::Context) {
    // Without a caller's trace, a request or an event starts its own,
    // rather than hang under whichever long-lived task polls it.
    let parent = if parent.span().span_context().is_valid() {
        parent
    } else {
        opentelemetry::Context::new()
    };
    let _ = span.set_parent(parent);
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
        span.record("span_id", tracing::field::display(span_context.span_id()));
    }
}

/// Writes the current trace context into outgoing headers.
pub fn inject_current(headers: &mut HeaderMap) {
    let context = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInject(headers))
    });
}

/// The current trace context as a `traceparent` value, for event envelopes.
pub fn current_traceparent() -> Option<String> {
    let mut headers = HeaderMap::new();
    inject_current(&mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

struct HeaderExtract<'a>(&'a HeaderMap);

impl Extractor for HeaderExtract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInject<'a>(&'a mut HeaderMap);

impl Injector for HeaderInject<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(key),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Fields a span carries, kept for the log lines written inside it.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

/// One JSON object a line: `timestamp`, `level`, `service`, `trace_id`,
/// `span_id`, `message`, then the fields of the event and its spans.
pub struct JsonLogLayer<W> {
    make_writer: W,
    service: String,
}

impl<W> JsonLogLayer<W> {
    pub fn new(make_writer: W) -> Self {
        Self {
            make_writer,
            service: "emporium".to_owned(),
        }
    }

    /// The `service` of lines written outside any service's span.
    pub fn with_service(self, service: &str) -> Self {
        Self {
            service: service.to_owned(),
            ..self
        }
    }
}

impl<S, W> Layer<S> for JsonLogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut JsonVisitor(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        line.insert(
            "level".into(),
            Value::from(event.metadata().level().as_str().to_lowercase()),
        );
        line.insert("service".into(), Value::from(self.service.as_str()));
        line.insert("target".into(), Value::from(event.metadata().target()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &fields.0 {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let Ok(mut text) = serde_json::to_vec(&line) else {
            return;
        };
        text.push(b'\n');
        let _ = self.make_writer.make_writer().write_all(&text);
    }
}
