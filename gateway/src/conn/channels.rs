//! Client-chosen channels of one connection: subscribe, unsubscribe and
//! live revocation, with the profile's limits.

use std::sync::Arc;

use herald_shared::Topic;
use herald_shared::envelope::RESERVED_TOPICS;
use herald_shared::profile::ChannelAuthorization;
use herald_shared::topic::glob_matches;

use super::Connection;
use crate::hub::Subscriber;

/// Channels a connection joined itself, and topics it recently left so that
/// events of theirs already queued are not written.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    joined: Vec<Topic>,
    left: Vec<Topic>,
}

impl Channels {
    /// Whether an event on `topic` must be skipped (the client left it).
    pub(crate) fn filtered(&self, topic: &Topic) -> bool {
        !self.left.is_empty() && self.left.contains(topic)
    }

    /// Topics the client left (and has not joined again).
    pub(crate) fn left(&self) -> &[Topic] {
        &self.left
    }

    fn forget(&mut self, topic: &Topic) {
        self.joined.retain(|t| t != topic);
        if !self.left.contains(topic) {
            self.left.push(topic.clone());
        }
    }
}

/// Why a client command was refused; the connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    BadRequest(&'static str),
    Forbidden(&'static str),
    TooMany,
    Internal,
}

impl Refusal {
    /// Error frame code and message.
    pub(crate) fn error(self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest(m) => ("bad_request", m),
            Self::Forbidden(m) => ("forbidden", m),
            Self::TooMany => ("rate_limited", "Too many subscriptions"),
            Self::Internal => ("internal_error", "Server error"),
        }
    }
}

impl Connection {
    /// The topic of the channel a subscribe/unsubscribe frame names.
    fn named_channel(&self, name: Option<&str>) -> Result<Topic, Refusal> {
        let name = name.ok_or(Refusal::BadRequest("Missing channel"))?;
        self.profile
            .channel_topic(name, &self.principal, &self.path)
            .filter(|t| !t.as_str().starts_with(RESERVED_TOPICS))
            .ok_or(Refusal::BadRequest("Invalid channel name"))
    }

    /// Join a channel; the topic when newly joined.
    pub(crate) async fn subscribe(
        &self,
        sub: &Arc<Subscriber>,
        channels: &mut Channels,
        name: Option<&str>,
    ) -> Result<Option<Topic>, Refusal> {
        let spec = self
            .profile
            .spec
            .channels
            .as_ref()
            .ok_or(Refusal::BadRequest("Channels are not supported"))?;
        let topic = self.named_channel(name)?;
        if channels.joined.contains(&topic) {
            return Ok(None);
        }
        if channels.joined.len() >= spec.max_per_connection {
            return Err(Refusal::TooMany);
        }
        let allowed = match spec.authorize {
            ChannelAuthorization::Any => Ok(true),
            ChannelAuthorization::Grants => {
                self.app.auth.may_subscribe(&self.principal, &topic).await
            }
        };
        match allowed {
            Ok(true) => {}
            Ok(false) => {
                return Err(Refusal::Forbidden(
                    "Not allowed to subscribe to this channel",
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read grants");
                return Err(Refusal::Internal);
            }
        }
        if let Err(e) = self.app.hub.join(&topic, sub).await {
            tracing::warn!(error = %e, "cannot subscribe");
            return Err(Refusal::Internal);
        }
        channels.left.retain(|t| *t != topic);
        channels.joined.push(topic.clone());
        Ok(Some(topic))
    }

    pub(crate) async fn unsubscribe(
        &self,
        sub: &Arc<Subscriber>,
        channels: &mut Channels,
        name: Option<&str>,
    ) -> Result<(), Refusal> {
        let topic = self.named_channel(name)?;
        if channels.joined.contains(&topic) {
            self.app.hub.leave(&topic, sub).await;
            channels.forget(&topic);
        }
        Ok(())
    }

    /// The backend took the channel `topic` away: leave it if joined.
    /// Returns whether it was.
    pub(crate) async fn drop_channel(
        &self,
        sub: &Arc<Subscriber>,
        channels: &mut Channels,
        topic: &str,
    ) -> bool {
        let Some(topic) = channels
            .joined
            .iter()
            .find(|t| t.as_str() == topic)
            .cloned()
        else {
            return false;
        };
        self.app.hub.leave(&topic, sub).await;
        channels.forget(&topic);
        true
    }

    /// A grant matching `glob` was revoked: drop every channel it covered
    /// that nothing else (claims, other grants, admin) still allows. Returns
    /// how many were dropped.
    pub(crate) async fn revoke(
        &self,
        sub: &Arc<Subscriber>,
        channels: &mut Channels,
        glob: &str,
    ) -> usize {
        let by_grant = self
            .profile
            .spec
            .channels
            .as_ref()
            .is_some_and(|c| c.authorize == ChannelAuthorization::Grants);
        if !by_grant {
            // Channels open to every member were never held by a grant.
            return 0;
        }
        let affected: Vec<Topic> = channels
            .joined
            .iter()
            .filter(|t| glob_matches(glob, t.as_str()))
            .cloned()
            .collect();
        let mut dropped = 0;
        for topic in affected {
            // On a store error, fail closed: a revoke must not leave access behind.
            if matches!(
                self.app.auth.may_subscribe(&self.principal, &topic).await,
                Ok(true)
            ) {
                continue;
            }
            self.app.hub.leave(&topic, sub).await;
            channels.forget(&topic);
            dropped += 1;
        }
        dropped
    }
}
