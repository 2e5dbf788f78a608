//! What happens between authentication and serving: the per-principal cap
//! and the path's resource (for WebSocket and SSE alike), the exclusive key
//! lease, and presence.

use std::collections::HashMap;

use herald_shared::Principal;
use serde_json::value::RawValue;

use super::{CloseReason, Connection};
use crate::limits::Slot;
use crate::profile::CompiledProfile;
use crate::state::AppState;

/// Checks made once the principal is known, for WebSocket and SSE alike:
/// the per-principal connection cap, then the path's resource (registered,
/// then allowed). The slot keeps the connection counted until dropped.
pub async fn admit(
    app: &AppState,
    profile: &CompiledProfile,
    principal: &Principal,
    path: &HashMap<String, String>,
) -> Result<Slot<String>, CloseReason> {
    let slot = app
        .limits
        .principal(&principal.sub)
        .ok_or(CloseReason::RateLimited)?;
    if let Some(topic) = profile.resource_topic(principal, path) {
        let Ok(topic) = topic else {
            return Err(CloseReason::NotFound);
        };
        match app.store.resource_exists(topic.as_str()).await {
            Ok(true) => {}
            Ok(false) => return Err(CloseReason::NotFound),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check resource");
                return Err(CloseReason::Internal);
            }
        }
        match app.auth.may_subscribe(principal, &topic).await {
            Ok(true) => {}
            Ok(false) => return Err(CloseReason::Forbidden),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check grants");
                return Err(CloseReason::Internal);
            }
        }
    }
    Ok(slot)
}

impl Connection {
    /// Announce this connection's presence when the profile has presence and
    /// the principal holds one of its roles. Failures are logged: presence is
    /// informative and must not keep a client out.
    pub(super) async fn join_presence(&self, member: &str) -> bool {
        let Some(spec) = &self.profile.spec.presence else {
            return false;
        };
        if !spec.roles.is_empty() && !self.principal.roles.iter().any(|r| spec.roles.contains(r)) {
            return false;
        }
        let Some((topic, key)) = self.profile.presence_target(&self.principal, &self.path) else {
            return false;
        };
        let data = self.presence_data(&key).await;
        let joined = self
            .app
            .presence
            .join(
                member,
                topic,
                key,
                &spec.online,
                &spec.offline,
                data,
                spec.lease_ms,
            )
            .await;
        if let Err(e) = &joined {
            tracing::warn!(error = %e, "presence unavailable");
        }
        joined.is_ok()
    }

    /// The presence events' payload: the stored snapshot of `data_topic`, or `{"id": key}`.
    async fn presence_data(&self, key: &str) -> Box<RawValue> {
        let stored = match self
            .profile
            .presence_data_topic(&self.principal, &self.path)
        {
            Some(topic) => self.app.store.snapshot(topic.as_str()).await.ok().flatten(),
            None => None,
        };
        stored
            .and_then(|json| RawValue::from_string(json).ok())
            .or_else(|| serde_json::value::to_raw_value(&serde_json::json!({ "id": key })).ok())
            .unwrap_or_default()
    }

    /// The profile's exclusive key, taken for this connection (or why not).
    pub(super) async fn take_lease(&self, holder: &str) -> Result<Option<String>, CloseReason> {
        let (Some(spec), Some(key)) = (
            &self.profile.spec.exclusive,
            self.profile.exclusive_key(&self.principal, &self.path),
        ) else {
            return Ok(None);
        };
        let key = key.ok_or(CloseReason::Conflict("Invalid client id"))?;
        match self.app.leases.acquire(&key, holder, spec.lease_ms).await {
            Ok(true) => Ok(Some(key)),
            Ok(false) => Err(CloseReason::Conflict("Client id already connected")),
            Err(e) => {
                tracing::warn!(error = %e, "cannot take lease");
                Err(CloseReason::Internal)
            }
        }
    }
}
