//! The shape of a service: how the binary names, starts, migrates and seeds
//! it, what a started one exposes, and the runtime it stands on, with the
//! staged shutdown of everything it spawned.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::auth::Verifier;
use crate::bus::{self, Handler, Outbox, SharedTransport};
use crate::config::{SectionDef, Settings};
use crate::http::Check;

/// Loads a service's demo data; see [`Definition::seed`]. It is handed the
/// services running in this process (none for `emporium seed`), for demo
/// data made through other services.
pub type SeedFn = fn(Arc<Settings>, Arc<[Started]>) -> BoxFuture<'static, anyhow::Result<Seeded>>;

/// What seeding did: how many records it added (none when they exist
/// already), and a line for the person starting the shop, shown once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub records: u64,
    pub notice: Option<String>,
}

/// What the binary knows of a service: its name and section, and how to
/// start and migrate it. The binary keeps a list of these, in start-up
/// order (a service after the ones it calls).
#[derive(Clone, Copy)]
pub struct Definition {
    pub name: &'static str,
    pub section: SectionDef,
    /// Starts the service; `local` holds the services already started in
    /// this process.
    pub start: fn(Runtime, Arc<[Started]>) -> BoxFuture<'static, anyhow::Result<Started>>,
    /// Applies the service's migrations to its configured store.
    pub migrate: fn(Arc<Settings>) -> BoxFuture<'static, anyhow::Result<()>>,
    /// Loads demo data into the configured stores through the service's
    /// own use cases, adding only what is missing; events go to its outbox.
    pub seed: Option<SeedFn>,
    /// The service's own metrics, declared when it starts (the platform's
    /// are declared for every service).
    pub metrics: &'static [crate::telemetry::Metric],
    /// The queue the service consumes events from, if it does.
    pub consumes: Option<crate::bus::Queue>,
}

impl std::fmt::Debug for Definition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Definition({})", self.name)
    }
}

/// A running service: where it listens, its HTTP routes (for a gateway in
/// the same process to call without a socket), and its readiness checks.
#[derive(Clone)]
pub struct Started {
    pub name: &'static str,
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    /// The service's whole HTTP router, as served on `http_addr`.
    pub router: axum::Router,
    /// Its gRPC router, as served on `grpc_addr`: peers in the same
    /// process call it without a socket.
    pub grpc_router: Option<axum::Router>,
    pub checks: Vec<Check>,
}

/// What every service is handed: settings, the shared event transport, the
/// token verifier, and the tasks it spawns, which stop in stages.
#[derive(Clone)]
pub struct Runtime {
    pub settings: Arc<Settings>,
    pub transport: SharedTransport,
    pub verifier: Verifier,
    /// Cancelled first: servers drain and consumers stop.
    pub shutdown: CancellationToken,
    /// Servers and consumers.
    tasks: TaskTracker,
    /// Cancelled once every server and consumer has stopped: outbox relays
    /// publish what those wrote, then end.
    flush: CancellationToken,
    relays: TaskTracker,
    /// The routers of services this process starts after the one asking.
    pub later: Later,
    /// The one service whose port serves the process's `/metrics`, where
    /// several run in it (the registry is the process's: served at every
    /// port it would be scraped once per service).
    pub metrics_owner: Option<&'static str>,
}

/// The service whose listeners serve `/metrics`, carried by every router
/// a [`Runtime`] serves; others answer where to look.
#[derive(Clone, Copy, Debug)]
pub struct MetricsOwner(pub &'static str);

/// The routers of the services a process is yet to start, each filled in
/// once it starts: how the gateway routes in-process to the storefront,
/// which starts after it because it calls it.
#[derive(Clone, Default)]
pub struct Later(Arc<std::sync::Mutex<std::collections::HashMap<&'static str, LateRouter>>>);

/// A service's router, once it has started.
pub type LateRouter = Arc<std::sync::OnceLock<axum::Router>>;

impl Later {
    fn slots(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<&'static str, LateRouter>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This process will start `name`.
    pub fn expect(&self, name: &'static str) {
        self.slots().entry(name).or_default();
    }

    /// The slot of `name` if this process will start it.
    pub fn router(&self, name: &str) -> Option<LateRouter> {
        self.slots().get(name).cloned()
    }

    fn arrived(&self, name: &'static str, router: &axum::Router) {
        if let Some(slot) = self.slots().get(name) {
            let _ = slot.set(router.clone());
        }
    }
}

/// The two faces of a business service: its REST routes with their
/// readiness checks, and its gRPC services with the names they answer to.
pub struct Faces {
    pub name: &'static str,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub routes: axum::Router,
    pub checks: Vec<Check>,
    pub grpc: tonic::service::Routes,
    pub grpc_names: &'static [&'static str],
    /// Who may call each gRPC method.
    pub admission: crate::grpc::Admission,
}

impl Runtime {
    /// Binds both ports and serves until shutdown: the routes with the
    /// operational routes and middleware every service has, the gRPC
    /// services with health and reflection.
    pub async fn serve_faces(&self, faces: Faces) -> anyhow::Result<Started> {
        let name = faces.name;
        let http_listener = crate::http::bind(faces.http_addr, &format!("{name} http")).await?;
        let grpc_listener = crate::http::bind(faces.grpc_addr, &format!("{name} grpc")).await?;
        let http_addr = http_listener.local_addr()?;
        let grpc_addr = grpc_listener.local_addr()?;
        let router = crate::http::finish_router(
            name,
            faces.routes,
            faces.checks.clone(),
            &self.settings.http,
        );
        let grpc_router = crate::grpc::router(
            name,
            faces.grpc,
            faces.grpc_names,
            faces.admission,
            self.verifier.clone(),
            &self.settings.http,
        )
        .await?;
        self.serve(name, http_listener, router.clone());
        self.serve(name, grpc_listener, grpc_router.clone());
        Ok(Started {
            name,
            http_addr,
            grpc_addr: Some(grpc_addr),
            router,
            grpc_router: Some(grpc_router),
            checks: faces.checks,
        })
    }

    /// The event transport and token verifier that the settings name.
    pub async fn new(settings: Settings) -> anyhow::Result<Self> {
        let transport = bus::transport_from_settings(&settings.bus)?;
        let verifier = Verifier::from_settings(&settings.auth).await?;
        Ok(Self {
            settings: Arc::new(settings),
            transport,
            verifier,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            flush: CancellationToken::new(),
            relays: TaskTracker::new(),
            later: Later::default(),
            metrics_owner: None,
        })
    }

    fn with_metrics_owner(&self, router: axum::Router) -> axum::Router {
        match self.metrics_owner {
            Some(owner) => router.layer(axum::Extension(MetricsOwner(owner))),
            None => router,
        }
    }

    /// Serves `router` over TLS on `listener` until shutdown, then drains.
    pub fn serve_tls(
        &self,
        service: &'static str,
        listener: TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
        router: axum::Router,
    ) -> anyhow::Result<()> {
        let router = self.with_metrics_owner(router);
        let shutdown = self.shutdown.clone();
        let (listener, accept) =
            crate::tls::TlsListener::new(listener, acceptor, shutdown.clone())?;
        self.spawn(service, "tls accept", accept);
        self.spawn(service, "server", async move {
            if let Err(e) = crate::http::serve(listener, router, shutdown).await {
                tracing::error!(error = %e, "server stopped");
            }
        });
        Ok(())
    }

    /// Serves `router` on `listener` until shutdown, then drains.
    pub fn serve(&self, service: &'static str, listener: TcpListener, router: axum::Router) {
        let router = self.with_metrics_owner(router);
        let shutdown = self.shutdown.clone();
        self.spawn(service, "server", async move {
            if let Err(e) = crate::http::serve(listener, router, shutdown).await {
                tracing::error!(error = %e, "server stopped");
            }
        });
    }

    /// Delivers the events of `interests` to `handler` from the durable
    /// queue `queue` until shutdown.
    pub async fn consume(
        &self,
        service: &'static str,
        queue: &str,
        interests: &[bus::Interest<'_>],
        handler: Arc<dyn Handler>,
    ) -> anyhow::Result<()> {
        let consumer = self
            .transport
            .subscribe(queue, interests, handler, self.shutdown.clone())
            .await?;
        // At zero from the start: an alert on dead letters reads a series.
        metrics::counter!("events_dead_lettered_total", "consumer" => queue.to_owned())
            .increment(0);
        self.spawn(service, "consumer", consumer);
        Ok(())
    }

    /// Publishes `outbox` from `db` until every server and consumer has
    /// stopped, then once more.
    pub fn relay(&self, service: &'static str, outbox: Outbox, db: sea_orm::DatabaseConnection) {
        let interval = Duration::from_millis(self.settings.bus.relay_interval_ms);
        let relay = outbox.relay(
            service,
            db,
            self.transport.clone(),
            interval,
            self.flush.clone(),
        );
        self.relays
            .spawn(relay.instrument(tracing::info_span!("relay", service)));
    }

    /// A long-lived task of `service`, stopped with the servers.
    pub fn spawn(
        &self,
        service: &'static str,
        what: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        self.tasks
            .spawn(task.instrument(tracing::info_span!("task", service, task = what)));
    }

    /// Stops in stages: servers drain and consumers settle the event in
    /// hand; then relays publish what they wrote. Each stage waits at most
    /// `grace`.
    pub async fn stop(&self, grace: Duration) {
        self.shutdown.cancel();
        drain(&self.tasks, grace, "servers and consumers").await;
        self.flush.cancel();
        drain(&self.relays, grace, "outbox relays").await;
    }
}

/// Waits for the tracker's tasks, at most `grace`.
async fn drain(tasks: &TaskTracker, grace: Duration, what: &'static str) {
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            what,
            "tasks still running after the grace period"
        );
    }
}

/// The services of one process.
pub struct Running {
    pub runtime: Runtime,
    pub services: Arc<[Started]>,
}

impl Running {
    pub fn get(&self, name: &str) -> Option<&Started> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Where this process's metrics are scraped: `/metrics` of the service
    /// that owns them (the gateway's internal listener, when it has one).
    pub fn metrics_url(&self) -> Option<String> {
        let owner = self.runtime.metrics_owner?;
        self.url(owner).map(|base| format!("{base}/metrics"))
    }

    /// The HTTP base URL of `name`, when it runs here.
    pub fn url(&self, name: &str) -> Option<String> {
        self.get(name).map(|s| format!("http://{}", s.http_addr))
    }

    /// Where each service listens, for printing.
    pub fn addresses(&self) -> Vec<(&'static str, &'static str, SocketAddr)> {
        let mut out = vec![];
        for service in self.services.iter() {
            out.push((service.name, "http", service.http_addr));
            if let Some(grpc) = service.grpc_addr {
                out.push((service.name, "grpc", grpc));
            }
        }
        out
    }

    pub async fn stop(self, grace: Duration) {
        self.runtime.stop(grace).await;
    }
}

/// Starts `definitions` in order on one runtime. If one fails to start, the
/// ones already running are stopped.
pub async fn start(settings: Settings, definitions: &[Definition]) -> anyhow::Result<Running> {
    start_reporting(settings, definitions, &|_, _| {}).await
}

/// As [`start`], telling `report` of each service once it listens, with
/// the time since the start began.
pub async fn start_reporting(
    mut settings: Settings,
    definitions: &[Definition],
    report: &(dyn Fn(&Started, Duration) + Sync),
) -> anyhow::Result<Running> {
    crate::install_crypto();
    let began = std::time::Instant::now();
    let identity_here = definitions.iter().any(|d| d.name == "identity");
    if identity_here {
        invent_service_secrets(&mut settings, definitions)?;
    } else if settings.auth.jwks_file.is_none() && settings.auth.jwks_url.is_none() {
        // With identity in the process its keys are known directly.
        tracing::warn!("no auth.jwks_url or auth.jwks_file: every token will be refused");
    }
    crate::telemetry::declare(crate::telemetry::PLATFORM_METRICS);
    for definition in definitions {
        crate::telemetry::declare(definition.metrics);
    }
    let mut runtime = Runtime::new(settings).await?;
    // One `/metrics` for the process: the gateway's where it runs here.
    runtime.metrics_owner = definitions
        .iter()
        .find(|d| d.name == "gateway")
        .or(definitions.first())
        .map(|d| d.name);
    for definition in definitions {
        runtime.later.expect(definition.name);
    }
    let mut started: Vec<Started> = Vec::with_capacity(definitions.len());
    for definition in definitions {
        let local: Arc<[Started]> = started.clone().into();
        match (definition.start)(runtime.clone(), local).await {
            Ok(service) => {
                tracing::info!(service = service.name, http = %service.http_addr, grpc = ?service.grpc_addr, "service listening");
                report(&service, began.elapsed());
                runtime.later.arrived(service.name, &service.router);
                started.push(service);
            }
            Err(e) => {
                runtime.stop(Duration::from_secs(5)).await;
                return Err(e.context(format!("{} did not start", definition.name)));
            }
        }
    }
    Ok(Running {
        runtime,
        services: started.into(),
    })
}

/// Gives each of `definitions` without a configured secret a random one.
/// Only for a process that runs identity: it is then the authority for
/// every service beside it, and nothing outside needs their secrets.
fn invent_service_secrets(
    settings: &mut Settings,
    definitions: &[Definition],
) -> anyhow::Result<()> {
    for definition in definitions {
        let secrets = &mut settings.auth.service_secrets;
        if secrets
            .get(definition.name)
            .is_some_and(|s| !s.expose().is_empty())
        {
            continue;
        }
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("no randomness for a service secret"))?;
        use base64::Engine;
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        secrets.insert(
            definition.name.to_owned(),
            crate::config::Secret::new(secret),
        );
    }
    Ok(())
}

/// The gRPC URL of `peer`: as configured, else the peer running in this
/// process.
pub fn peer_url(settings: &Settings, local: &[Started], peer: &str) -> anyhow::Result<String> {
    if let Some(url) = settings.peer(peer) {
        return Ok(url);
    }
    local
        .iter()
        .find(|s| s.name == peer)
        .and_then(|s| s.grpc_addr)
        .map(|addr| format!("http://{addr}"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "configuration: peers.{peer} (or {}_SERVICE_URL) is required when {peer} runs elsewhere",
                peer.to_uppercase()
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_peer_is_configured_or_in_this_process() {
        let local = [Started {
            name: "catalog",
            http_addr: ([127, 0, 0, 1], 8006).into(),
            grpc_addr: Some(([127, 0, 0, 1], 50050).into()),
            router: axum::Router::new(),
            grpc_router: None,
            checks: vec![],
        }];
        let mut settings = Settings::default();
        assert_eq!(
            peer_url(&settings, &local, "catalog").unwrap(),
            "http://127.0.0.1:50050"
        );
        let err = peer_url(&settings, &local, "inventory")
            .unwrap_err()
            .to_string();
        assert!(err.contains("INVENTORY_SERVICE_URL"), "{err}");
        settings
            .peers
            .insert("catalog".into(), "catalog-a:50050".into());
        assert_eq!(
            peer_url(&settings, &local, "catalog").unwrap(),
            "http://catalog-a:50050",
            "configured wins"
        );
    }
}
