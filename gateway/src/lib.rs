//! Herald's gateway: serves products' real-time APIs over WebSocket (and
//! Server-Sent Events) from route profiles, and fans out events that backends publish through Redis
//! (or the embedded broker) to every connection that should see them.
//!
//! Components, from the edge inwards:
//! - [`config`]: one typed configuration, TOML + `HERALD_*` environment, validated.
//! - [`server`]: the accept loop (request-head timeout, TCP keepalive, drain tracking).
//! - [`ws`]: the route handler; address caps from [`limits`], authenticates with
//!   [`auth`], starts a [`conn`] task or an [`sse`] stream.
//! - [`auth`]: credentials (JWT, admin key, API keys, sessions) to a principal.
//! - [`profile`]: route profiles compiled for serving, and wire encoding.
//! - [`conn`]: one task per socket: topics, snapshot, events, client frames, heartbeat.
//! - [`replay`]: history replay on connect (resume positions, latest events, gaps).
//! - [`hub`]: topic → local connections; drives broker subscriptions; fan-out.
//! - [`broker`]: the seam to other replicas: in-memory or Redis pub/sub, with
//!   gap repair from history after a reconnect.
//! - [`store`]: API keys, sessions, snapshots and grants written by backends; leases.
//! - [`presence`]: cluster-wide online/offline events (agents).
//! - [`lease`]: exclusive keys (`client_id`) held by this replica, renewed together.
//! - [`metrics`], [`shutdown`]: observability and the drain sequence.
//!
//! [`run`] wires them and is the one entry point for `main` and tests.

pub mod auth;
pub mod broker;
pub mod config;
pub mod conn;
pub mod hub;
pub mod lease;
pub mod limits;
pub mod metrics;
pub mod presence;
pub mod profile;
pub mod replay;
pub mod server;
pub mod shutdown;
pub mod sse;
pub mod store;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::Utf8Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use fred::interfaces::ClientLike;
use herald_shared::Keys;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::broker::Broker;
use crate::broker::memory::MemoryBroker;
use crate::broker::redis::RedisBroker;
use crate::config::Config;
use crate::hub::Hub;
use crate::lease::Leases;
use crate::limits::ConnectionLimits;
use crate::presence::{Backend as PresenceBackend, Presence};
use crate::profile::wire::{encode_bare, now_ms};
use crate::profile::{CompiledProfile, ProfileRegistry};
use crate::shutdown::{Phase, Shutdown};
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;

/// Shared handles of one gateway process.
pub struct AppState {
    pub config: Config,
    pub profiles: ProfileRegistry,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    pub shutdown: Shutdown,
    pub leases: Arc<Leases>,
    pub limits: ConnectionLimits,
    pub presence: Arc<Presence>,
    /// Random id of this process, part of lease holder names.
    pub replica_id: String,
    prometheus: Option<PrometheusHandle>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("broker", &self.broker.name())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The heartbeat ping frame of a profile.
    pub fn ping_frame(&self, profile: &CompiledProfile) -> Utf8Bytes {
        let shape = &self.profiles.shapes[profile.shape];
        let Some(hb) = &profile.spec.heartbeat else {
            return encode_bare(shape, "ping", now_ms());
        };
        match &hb.timestamp_field {
            Some(field) if shape.timestamp_field.is_none() => {
                let mut with_ts = shape.clone();
                with_ts.timestamp_field = Some(field.clone());
                encode_bare(&with_ts, &hb.ping_type, now_ms())
            }
            _ => encode_bare(shape, &hb.ping_type, now_ms()),
        }
    }
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("broker: {0}")]
    Broker(#[from] broker::BrokerError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Serve until `signal` resolves, then drain and return.
pub async fn run(
    config: Config,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let prometheus = match metrics::install() {
        Ok(h) => {
            tokio::spawn(metrics::upkeep(h.clone()));
            Some(h)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    };
    let keys = Keys::new(&config.redis.prefix);
    let (broker, store, presence_backend): (Arc<dyn Broker>, Arc<dyn Store>, PresenceBackend) =
        if config.redis.url.is_empty() {
            tracing::info!("embedded in-memory broker (single replica)");
            let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
            let presence = PresenceBackend::Memory {
                members: Default::default(),
                broker: Arc::clone(&broker),
            };
            (
                broker,
                Arc::new(MemoryStore::from_config(&config.auth)),
                presence,
            )
        } else {
            let broker = RedisBroker::start(&config.redis.url, keys.clone())?;
            let client = broker::redis::builder(&config.redis.url)?
                .build()
                .map_err(|e| broker::BrokerError::Config(e.to_string()))?;
            client.connect();
            tracing::info!("redis broker");
            (
                broker,
                Arc::new(RedisStore::new(client.clone(), keys.clone())),
                PresenceBackend::Redis(client),
            )
        };
    for (route, kind) in config.unusable_credentials() {
        tracing::warn!(
            route,
            ?kind,
            "credential kind accepted by the profile but not configured (secret missing)"
        );
    }
    let profiles = ProfileRegistry::compile(config.profiles());
    let hub = Hub::new(Arc::clone(&broker), profiles.shapes.len());
    let renew_every = config
        .profiles()
        .iter()
        .filter_map(|p| p.exclusive.as_ref().map(|e| e.lease_ms))
        .min()
        .map(|ms| Duration::from_millis(ms / 3));
    let leases = Leases::start(Arc::clone(&store), renew_every);
    let replica_id = format!("{:016x}", rand::random::<u64>());
    let presence_every = config
        .profiles()
        .iter()
        .filter_map(|p| p.presence.as_ref().map(|e| e.lease_ms))
        .min()
        .map(|ms| Duration::from_millis(ms / 3));
    let presence = Presence::start(presence_backend, keys, replica_id.clone(), presence_every);
    let state = Arc::new(AppState {
        auth: Authenticator::new(&config.auth, Arc::clone(&store)),
        shutdown: Shutdown::new(Duration::from_millis(config.shutdown.drain_ms)),
        leases,
        limits: ConnectionLimits::new(
            config.limits.connections_per_ip,
            config.limits.connections_per_principal,
            config.limits.connects_per_ip_per_second,
        ),
        presence,
        replica_id,
        config,
        profiles,
        hub,
        broker,
        store,
        prometheus,
    });

    let app = router(Arc::clone(&state));
    let drain_state = Arc::clone(&state);
    let stop = CancellationToken::new();
    let accept = tokio::spawn(server::serve(
        listener,
        app,
        Duration::from_millis(state.config.limits.handshake_timeout_ms),
        stop.clone(),
        state.shutdown.tracker().clone(),
    ));
    signal.await;
    // Not ready first, still serving, so balancers polling readiness move
    // away; then stop accepting (new connections are refused) and drain.
    state.shutdown.unready();
    tokio::time::sleep(Duration::from_millis(state.config.shutdown.unready_ms)).await;
    stop.cancel();
    let _ = accept.await;
    drain_state.shutdown.begin();
    state.shutdown.wait().await;
    tracing::info!("stopped");
    Ok(())
}

fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text));
    for profile in &state.profiles.profiles {
        let p = Arc::clone(profile);
        router = router.route(
            &profile.spec.path,
            any(move |st, path, query, peer, cookies, headers, upgrade| {
                ws::upgrade(
                    Arc::clone(&p),
                    st,
                    path,
                    query,
                    peer,
                    cookies,
                    headers,
                    upgrade,
                )
            }),
        );
    }
    router.with_state(state)
}

async fn readyz(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    if app.shutdown.phase() != Phase::Running {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !app.broker.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "broker not ready")
    } else {
        (StatusCode::OK, "ready")
    }
}

async fn metrics_text(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    match &app.prometheus {
        Some(h) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/plain")],
            String::new(),
        ),
    }
}
