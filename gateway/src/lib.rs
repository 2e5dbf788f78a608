//! Herald's gateway: serves products' real-time APIs over WebSocket (and
//! Server-Sent Events) from route profiles, and fans out events that backends publish through Redis
//! (or the embedded broker) to every connection that should see them.
//!
//! Components, from the edge inwards (`docs/architecture.md` draws them):
//! - [`config`]: one typed configuration, TOML + `HERALD_*` environment, validated.
//! - [`server`]: the accept loop (request-head timeout, TCP keepalive, drain tracking).
//! - [`router`]: the HTTP surface; [`route`]: one handler per profile (address
//!   caps from [`limits`], `Origin`, authentication with [`auth`]) that picks a transport.
//! - [`api`]: the server API for backends (publish, snapshots, resync,
//!   listings) under `api.prefix`, over the same seams; [`console`]: the
//!   operator console page on top of it, fed by [`replicas`] (what each
//!   replica reports about itself through the store).
//! - [`ws`], [`sse`]: transports, thin adapters that move a session's frames.
//! - [`conn`]: the session, written once for every transport: admission,
//!   lease, presence, topics, snapshot, replay, live events, commands,
//!   heartbeat, expiry, close.
//! - [`profile`]: route profiles compiled for serving, and their wire encoding.
//! - [`hub`]: topic → local connections; drives broker subscriptions; fan-out.
//! - Seams, each a trait with a memory and a Redis implementation, chosen by
//!   [`backends`]: [`broker`] (pub/sub to other replicas, gap repair),
//!   [`store`] (keys, sessions, snapshots, grants, history, leases) and
//!   [`presence`] (cluster-wide online/offline).
//! - [`lease`]: exclusive keys (`client_id`) held by this replica, renewed together.
//! - [`state`]: the shared handles; [`metrics`], [`shutdown`]: observability and the drain.
//!
//! [`run`] wires them and is the one entry point for `main` and tests.

pub mod api;
pub mod auth;
pub mod backends;
pub mod broker;
pub mod config;
pub mod conn;
pub mod console;
pub mod hub;
pub mod lease;
pub mod limits;
pub mod metrics;
pub mod presence;
pub mod probe;
pub mod profile;
pub mod replicas;
pub mod route;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod sse;
pub mod state;
pub mod store;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::backends::Backends;
use crate::config::Config;
use crate::hub::Hub;
use crate::lease::Leases;
use crate::limits::ConnectionLimits;
use crate::presence::Presence;
use crate::profile::ProfileRegistry;
use crate::shutdown::Shutdown;
use crate::state::AppState;

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("broker: {0}")]
    Broker(#[from] broker::BrokerError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Jwt(#[from] auth::JwtKeyError),
}

/// Serve until `signal` resolves, then drain and return. `api_listener`
/// serves the server API on its own address (`api.listen`).
pub async fn run(
    config: Config,
    listener: TcpListener,
    api_listener: Option<TcpListener>,
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
    let Backends {
        broker,
        store,
        presence,
    } = Backends::from_config(&config)?;
    for (route, kind) in config.unusable_credentials() {
        tracing::warn!(
            route,
            ?kind,
            "credential kind accepted by the profile but not configured (secret missing)"
        );
    }
    let profiles = ProfileRegistry::compile(config.profiles());
    let hub = Hub::new(Arc::clone(&broker), profiles.shapes.len());
    if let Err(e) = hub.listen_control().await {
        // Recorded by the broker: subscribed when it (re)connects.
        tracing::warn!(error = %e, "control topic not subscribed yet");
    }
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
    let presence = Presence::start(presence, replica_id.clone(), presence_every);
    let probing = CancellationToken::new();
    let probe = probe::Probe::start(
        Arc::clone(&hub),
        Arc::clone(&broker),
        &replica_id,
        &config.readiness,
        probing.clone(),
    );
    let state = Arc::new(AppState {
        auth: Authenticator::new(&config.auth, Arc::clone(&store))?,
        api_keys: api::ApiKeys::from_config(&config.api),
        shutdown: Shutdown::new(Duration::from_millis(config.shutdown.drain_ms)),
        leases,
        limits: ConnectionLimits::new(
            config.limits.connections_per_ip,
            config.limits.connections_per_principal,
            config.limits.connects_per_ip_per_second,
        ),
        presence,
        probe,
        replica_id,
        config,
        profiles,
        hub,
        broker,
        store,
        prometheus,
    });

    let reporting = CancellationToken::new();
    tokio::spawn(replicas::report(Arc::clone(&state), reporting.clone()));
    let app = router::router(Arc::clone(&state));
    let drain_state = Arc::clone(&state);
    let stop = CancellationToken::new();
    let head_timeout = Duration::from_millis(state.config.limits.handshake_timeout_ms);
    let accept = tokio::spawn(server::serve(
        listener,
        app,
        head_timeout,
        stop.clone(),
        state.shutdown.tracker().clone(),
    ));
    let api_accept = api_listener.map(|l| {
        tokio::spawn(server::serve(
            l,
            router::api_router(Arc::clone(&state)),
            head_timeout,
            stop.clone(),
            state.shutdown.tracker().clone(),
        ))
    });
    signal.await;
    // Not ready first, still serving, so balancers polling readiness move
    // away; then stop accepting (new connections are refused) and drain.
    state.shutdown.unready();
    tokio::time::sleep(Duration::from_millis(state.config.shutdown.unready_ms)).await;
    stop.cancel();
    let _ = accept.await;
    if let Some(a) = api_accept {
        let _ = a.await;
    }
    drain_state.shutdown.begin();
    // Sessions hear it through the hub: one signal each, where a shared
    // token would be a waiter list every session re-registers in per event.
    drain_state.hub.drain_all();
    state.shutdown.wait().await;
    probing.cancel();
    reporting.cancel();
    tracing::info!("stopped");
    Ok(())
}
