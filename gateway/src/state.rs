//! The shared handles of one gateway process, built once by [`crate::run`]
//! and handed to every route and session.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::api::ApiKeys;
use crate::auth::Authenticator;
use crate::broker::Broker;
use crate::config::Config;
use crate::hub::Hub;
use crate::lease::Leases;
use crate::limits::ConnectionLimits;
use crate::presence::Presence;
use crate::probe::Probe;
use crate::profile::ProfileRegistry;
use crate::shutdown::Shutdown;
use crate::store::Store;

pub struct AppState {
    pub config: Config,
    pub profiles: ProfileRegistry,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    /// Keys of the server API (`api`), by SHA-256.
    pub api_keys: ApiKeys,
    pub shutdown: Shutdown,
    pub leases: Arc<Leases>,
    pub limits: ConnectionLimits,
    pub presence: Arc<Presence>,
    /// Whether events this replica publishes come back (`/readyz`).
    pub probe: Arc<Probe>,
    /// Random id of this process, part of lease holder and presence member names.
    pub replica_id: String,
    pub prometheus: Option<PrometheusHandle>,
}

impl AppState {
    /// What `/readyz` answers: ready, or why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.shutdown.phase() != crate::shutdown::Phase::Running {
            Err("draining")
        } else if !self.broker.is_ready() {
            Err("broker not ready")
        } else if !self.probe.ok() {
            Err("delivery probes missing")
        } else {
            Ok(())
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("broker", &self.broker.name())
            .finish_non_exhaustive()
    }
}
