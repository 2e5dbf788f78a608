//! Route profiles compiled for serving: topic templates resolved against a
//! principal and the path, command lookup, the wire shape's index and the
//! route's metric handles. Connection code reads these and never asks which
//! product it serves.

pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use herald_shared::profile::{Command, FrameSpec, RouteProfile};
use herald_shared::{Principal, Topic, TopicError, now_ms};

use crate::hub::SharedEvent;
use crate::metrics::RouteMetrics;

/// A profile ready to serve.
#[derive(Debug)]
pub struct CompiledProfile {
    pub spec: RouteProfile,
    /// Index of this profile's frame shape (`spec.frame`) among the
    /// registry's distinct shapes; events are encoded once per shape,
    /// whatever the number of routes.
    pub shape: usize,
    pub metrics: RouteMetrics,
}

/// Every served profile plus the distinct frame shapes among them.
#[derive(Debug)]
pub struct ProfileRegistry {
    pub profiles: Vec<Arc<CompiledProfile>>,
    pub shapes: Arc<[FrameSpec]>,
}

impl ProfileRegistry {
    pub fn compile(specs: &[RouteProfile]) -> Self {
        let mut shapes: Vec<FrameSpec> = Vec::new();
        let profiles = specs
            .iter()
            .map(|spec| {
                let shape = shapes
                    .iter()
                    .position(|s| *s == spec.frame)
                    .unwrap_or_else(|| {
                        shapes.push(spec.frame.clone());
                        shapes.len() - 1
                    });
                Arc::new(CompiledProfile {
                    spec: spec.clone(),
                    shape,
                    metrics: RouteMetrics::new(&spec.name),
                })
            })
            .collect();
        Self {
            profiles,
            shapes: shapes.into(),
        }
    }
}

impl CompiledProfile {
    /// Topics joined on connect, in template order, without repeats.
    pub fn join_topics(
        &self,
        who: &Principal,
        path: &HashMap<String, String>,
    ) -> Result<Vec<Topic>, TopicError> {
        render_all(&self.spec.join, who, path)
    }

    /// Topics whose stored snapshot may serve this connection, in order.
    pub fn snapshot_topics(
        &self,
        who: &Principal,
        path: &HashMap<String, String>,
    ) -> Result<Vec<Topic>, TopicError> {
        match &self.spec.snapshot {
            Some(s) => render_all(&s.topics, who, path),
            None => Ok(Vec::new()),
        }
    }

    /// What a client frame's type means, if anything.
    pub fn command(&self, frame_type: &str) -> Option<Command> {
        self.spec.commands.get(frame_type).copied()
    }

    /// Whether a fresh snapshot follows events of this type.
    pub fn resends_snapshot_after(&self, event_type: &str) -> bool {
        self.spec
            .snapshot
            .as_ref()
            .is_some_and(|s| s.resend_after.iter().any(|t| t == event_type))
    }
}

/// The frames this route sends, in its wire shape: the one place a
/// connection turns events and replies into bytes.
impl CompiledProfile {
    /// A live or replayed event, encoded once per shape and shared.
    pub fn event_frame(&self, event: &SharedEvent) -> Utf8Bytes {
        event.frame(self.shape, |env| {
            wire::encode_event_at(
                &self.spec.frame,
                &env.event_type,
                env.ts,
                env.data.get(),
                env.offset.as_deref(),
            )
        })
    }

    /// An event showing `position` instead of its own offset: encoded for
    /// one socket (a route whose position names several topics).
    pub fn event_frame_at(&self, event: &SharedEvent, position: &str) -> Utf8Bytes {
        let env = &event.envelope;
        wire::encode_event_at(
            &self.spec.frame,
            &env.event_type,
            env.ts,
            env.data.get(),
            Some(position),
        )
    }

    /// A frame of the gateway's own making with a payload (snapshot, gap).
    pub fn payload_frame(&self, event_type: &str, data: &str) -> Utf8Bytes {
        wire::encode_event(&self.spec.frame, event_type, now_ms(), data)
    }

    /// The event type of gap frames (a resume position older than the history).
    pub fn gap_type(&self) -> &str {
        self.spec
            .resume
            .as_ref()
            .map_or("herald.gap", |r| r.gap_type.as_str())
    }

    /// The gap frame for a topic whose history no longer reaches back to
    /// the client's offset in it.
    pub fn gap_frame(&self, topic: &Topic, since: &str) -> Utf8Bytes {
        let data = serde_json::json!({ "since": since, "topic": topic.as_str() }).to_string();
        self.payload_frame(self.gap_type(), &data)
    }

    /// The heartbeat ping; with the heartbeat's own timestamp field when the
    /// shape has none.
    pub fn ping_frame(&self) -> Utf8Bytes {
        let shape = &self.spec.frame;
        let Some(hb) = &self.spec.heartbeat else {
            return wire::encode_bare(shape, "ping", now_ms());
        };
        match &hb.timestamp_field {
            Some(field) if shape.timestamp_field.is_none() => {
                let mut with_ts = shape.clone();
                with_ts.timestamp_field = Some(field.clone());
                wire::encode_bare(&with_ts, &hb.ping_type, now_ms())
            }
            _ => wire::encode_bare(shape, &hb.ping_type, now_ms()),
        }
    }

    /// The reply to a client heartbeat, when the route answers them.
    pub fn heartbeat_ack_frame(&self) -> Option<Utf8Bytes> {
        let ack = self.spec.heartbeat_ack.as_ref()?;
        Some(wire::encode_ack(&self.spec.frame, ack, now_ms()))
    }

    /// The confirmation of a channel command (`subscribed` / `unsubscribed`),
    /// when the route sends them.
    pub fn channel_ack_frame(&self, subscribed: bool, channel: &str) -> Option<Utf8Bytes> {
        let acks = self.spec.channels.as_ref()?.acks.as_ref()?;
        let event_type = match subscribed {
            true => &acks.subscribed,
            false => &acks.unsubscribed,
        };
        let body = serde_json::json!({ acks.field.as_str(): channel }).to_string();
        Some(self.payload_frame(event_type, &body))
    }

    /// The error frame for `(code, message)`, when the route has error frames.
    pub fn error_frame(&self, (code, message): (&str, &str)) -> Option<Utf8Bytes> {
        let errors = self.spec.errors.as_ref()?;
        let shape = &self.spec.frame;
        let frame = match &errors.timestamp_field {
            Some(field) if shape.timestamp_field.is_none() => {
                let mut with_ts = shape.clone();
                with_ts.timestamp_field = Some(field.clone());
                wire::encode_error(&with_ts, errors, code, message, now_ms())
            }
            _ => wire::encode_error(shape, errors, code, message, now_ms()),
        };
        Some(frame)
    }
}

/// Channel names and exclusive keys chosen by clients: ASCII letters,
/// digits and `._-@+=`, no `:` (so a name cannot add topic segments).
pub fn valid_name(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+' | b'=')
        })
}

impl CompiledProfile {
    /// The topic of a client-chosen channel, if the name is acceptable.
    pub fn channel_topic(
        &self,
        channel: &str,
        who: &Principal,
        path: &HashMap<String, String>,
    ) -> Option<Topic> {
        let spec = self.spec.channels.as_ref()?;
        if !valid_name(channel, spec.max_len) {
            return None;
        }
        let template = spec.topic.replace("{channel}", channel);
        render(&template, who, path)
            .into_iter()
            .next()
            .and_then(|t| Topic::parse(&t).ok())
    }

    /// Audience topic and key of this connection's presence.
    pub fn presence_target(
        &self,
        who: &Principal,
        path: &HashMap<String, String>,
    ) -> Option<(Topic, String)> {
        let spec = self.spec.presence.as_ref()?;
        let topic = render(&spec.topic, who, path)
            .into_iter()
            .next()
            .and_then(|t| Topic::parse(&t).ok())?;
        let key = render(&spec.key, who, path)
            .into_iter()
            .next()
            .filter(|k| valid_name(k, 200))?;
        Some((topic, key))
    }

    /// Topic whose stored snapshot is the presence payload.
    pub fn presence_data_topic(
        &self,
        who: &Principal,
        path: &HashMap<String, String>,
    ) -> Option<Topic> {
        let template = self.spec.presence.as_ref()?.data_topic.as_ref()?;
        render(template, who, path)
            .into_iter()
            .next()
            .and_then(|t| Topic::parse(&t).ok())
    }

    /// The path's resource topic, if the profile names one.
    pub fn resource_topic(
        &self,
        who: &Principal,
        path: &HashMap<String, String>,
    ) -> Option<Result<Topic, TopicError>> {
        let spec = self.spec.resource.as_ref()?;
        let rendered = render(&spec.topic, who, path)
            .into_iter()
            .next()
            .unwrap_or_default();
        Some(Topic::parse(&rendered))
    }

    /// Who sent an upstream frame (`{path.id}`: the agent).
    pub fn upstream_source(
        &self,
        who: &Principal,
        path: &HashMap<String, String>,
    ) -> Option<String> {
        let spec = self.spec.upstream.as_ref()?;
        render(&spec.source, who, path).into_iter().next()
    }

    /// The exclusive key of this connection (`client_id`), if the profile has one.
    /// `Some(None)` when the key cannot be used (bad characters).
    pub fn exclusive_key(
        &self,
        who: &Principal,
        path: &HashMap<String, String>,
    ) -> Option<Option<String>> {
        let spec = self.spec.exclusive.as_ref()?;
        let key = render(&spec.key, who, path).into_iter().next();
        Some(key.filter(|k| valid_name(k, 200)))
    }
}

fn render_all(
    templates: &[String],
    who: &Principal,
    path: &HashMap<String, String>,
) -> Result<Vec<Topic>, TopicError> {
    let mut out: Vec<Topic> = Vec::new();
    for t in templates {
        for s in render(t, who, path) {
            let topic = Topic::parse(&s)?;
            if !out.contains(&topic) {
                out.push(topic);
            }
        }
    }
    Ok(out)
}

/// Expand one template. `{role}` yields one topic per role; a template that
/// needs an org the principal lacks yields nothing.
fn render(template: &str, who: &Principal, path: &HashMap<String, String>) -> Vec<String> {
    let mut base = template.replace("{sub}", &who.sub);
    if base.contains("{org}") {
        let Some(org) = &who.org else {
            return Vec::new();
        };
        base = base.replace("{org}", org);
    }
    for (name, value) in path {
        base = base.replace(&format!("{{path.{name}}}"), value);
    }
    if base.contains("{role}") {
        who.roles
            .iter()
            .map(|r| base.replace("{role}", r))
            .collect()
    } else {
        vec![base]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_templates() {
        let mut who = Principal::new("alice");
        who.roles = vec!["admin".into(), "ops".into()];
        let path = HashMap::from([("id".to_owned(), "r1".to_owned())]);
        let t = |s: &[&str], who: &Principal| {
            render_all(
                &s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>(),
                who,
                &path,
            )
        };
        let got = t(
            &[
                "user:{sub}",
                "role:{role}",
                "org:{org}",
                "res:run:{path.id}",
                "user:{sub}",
            ],
            &who,
        )
        .expect("valid");
        let got: Vec<&str> = got.iter().map(Topic::as_str).collect();
        assert_eq!(got, ["user:alice", "role:admin", "role:ops", "res:run:r1"]);
        who.sub = "bad name".into();
        assert!(t(&["user:{sub}"], &who).is_err());
    }
}
