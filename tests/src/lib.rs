//! Support for Herald's black-box suites: real `redis-server` processes,
//! real `herald-gateway` processes and real WebSocket and SSE clients.
//!
//! The gateway binary is the one `cargo build --workspace --bins` leaves
//! next to the test executables (`target/<profile>/herald-gateway`;
//! [`gateway_binary`] runs that build once per test process so it is
//! current); the suites never run the gateway in-process.
//!
//! Where things live:
//! - `redis`: [`RedisServer`] processes (and [`TlsRedis`]) and queries about their state;
//!   `resp`: the client connection those queries use ([`RedisConnection`]).
//! - `redis_cluster`: [`RedisCluster`], three primaries and three replicas.
//! - `sentinel`: [`Sentinels`], a primary, a replica and three sentinels.
//! - `gateway`: [`Gateway`] processes, [`GatewayOptions`], [`gateway_binary`];
//!   `cluster`: [`Cluster`] (Redis, replicas, publisher);
//!   `config`: the bundled configuration and edited copies;
//!   [`profiles`]: profiles that exist only in test configs.
//! - `ws`: [`WsClient`], [`Closed`]; `sse`: [`SseClient`], [`SseEvent`],
//!   [`SseResponse`]; `http`: [`http_get`].
//! - `tokens`: test secrets, [`jwt`], [`jwt_with_topics`], [`base64url`],
//!   [`unix_now`].
//! - `wait`: [`EVENT_TIMEOUT`], [`wait_until`]; `process`: scratch dirs,
//!   free ports.
//! - `browser`: [`Browser`], headless Chromium through playwright-core.
//! - `front`: [`Front`], a path-routing loopback front door with failover.
//! - `node`: [`NodeScript`], real JavaScript clients and the browser driver
//!   in `tests/clients/`.
//! - `assertions`: [`assert_error_frame`].

mod assertions;
mod browser;
mod cluster;
mod config;
mod front;
mod gateway;
mod http;
pub mod load;
mod node;
mod process;
pub mod profiles;
mod redis;
mod redis_cluster;
mod resp;
mod sentinel;
mod sse;
mod tokens;
mod wait;
mod ws;

pub use assertions::assert_error_frame;
pub use browser::{Browser, screenshots_dir};
pub use cluster::Cluster;
pub use config::{FAST_PROBES, default_config, deploy_config, profile_config};
pub use front::{Front, Upstream};
pub use gateway::{
    Gateway, GatewayOptions, gateway_binary, heraldctl, heraldctl_publish, readiness_dip,
};
pub use http::{http_get, metric};
pub use node::{NodeScript, clients_dir};
pub use process::{cpu_seconds, free_port, rss_kib, scratch_dir};
pub use redis::{RedisServer, TlsRedis};
pub use redis_cluster::RedisCluster;
pub use resp::{RedisConnection, Reply};
pub use sentinel::Sentinels;
pub use sse::{SseClient, SseEvent, SseResponse};
pub use tokens::{
    ADMIN_KEY, JWT_SECRET, OPERATOR_KEY, admin_jwt_signed_with, base64url, jwt, jwt_from_claims,
    jwt_with_topics, unix_now,
};
pub use wait::{EVENT_TIMEOUT, wait_until};
pub use ws::{Closed, WsClient};
