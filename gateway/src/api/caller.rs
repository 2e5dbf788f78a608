//! Who is calling the server API: the operator key (`HERALD_API_KEY`) or a
//! backend key from `api.keys`, each with its capabilities, or the operator
//! console's session (see [`crate::console`]). End-user credentials (JWTs,
//! end-user API keys, sessions) are never accepted here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use herald_shared::hash_secret;

use super::problem::Problem;
use crate::config::{ApiConfig, Capability};
use crate::state::AppState;

/// The server API's keys, by SHA-256.
#[derive(Debug, Default)]
pub struct ApiKeys {
    by_hash: HashMap<String, Vec<Capability>>,
}

impl ApiKeys {
    pub fn from_config(api: &ApiConfig) -> Self {
        let mut by_hash: HashMap<String, Vec<Capability>> = api
            .keys
            .iter()
            .map(|k| (k.sha256.clone(), k.capabilities.clone()))
            .collect();
        if let Some(operator) = &api.operator_key {
            by_hash.insert(hash_secret(operator.expose()), vec![Capability::Admin]);
        }
        Self { by_hash }
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    fn capabilities(&self, key: &str) -> Option<&[Capability]> {
        self.by_hash.get(&hash_secret(key)).map(Vec::as_slice)
    }
}

/// An authenticated caller, checked against the endpoint's capability.
#[derive(Debug)]
pub(super) struct Caller {
    capabilities: Vec<Capability>,
}

impl Caller {
    /// Refuse with 403 unless the caller holds `needed` (or `admin`).
    pub(super) fn require(&self, needed: Capability) -> Result<(), Problem> {
        if self
            .capabilities
            .iter()
            .any(|c| *c == needed || *c == Capability::Admin)
        {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this key lacks the `{}` capability",
                match needed {
                    Capability::Publish => "publish",
                    Capability::Admin => "admin",
                }
            )))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Problem> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let Some(ip) = peer
            && !app.limits.connect_allowed(ip)
        {
            return Err(Problem::rate_limited());
        }
        // The operator console: its session cookie, on a request only a page
        // of this origin can make (a custom header needs CORS, never granted).
        if app.config.api.console
            && parts.headers.contains_key(crate::console::HEADER)
            && crate::console::signed_in(app, &parts.headers)
        {
            return Ok(Self {
                capabilities: vec![Capability::Admin],
            });
        }
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Problem::unauthorized("missing `Authorization: Bearer KEY`"))?;
        let capabilities = app.api_keys.capabilities(key).ok_or_else(|| {
            Problem::unauthorized("unknown key (end-user credentials are not accepted)")
        })?;
        Ok(Self {
            capabilities: capabilities.to_vec(),
        })
    }
}
