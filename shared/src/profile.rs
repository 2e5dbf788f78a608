//! Route profiles: how one product's real-time API is served, as data.
//!
//! A profile names a path, where credentials come from, which topics a
//! connection joins, how events are framed, which client frames mean what,
//! the heartbeat, the snapshot sent on connect and the close codes. The
//! gateway compiles profiles at start-up and its connection code only reads
//! these fields; adding a product API is a configuration change.
//! `docs/profiles.md` documents every field with an example.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One route served by the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteProfile {
    /// Short name used in metrics labels and logs (`docsfy`).
    pub name: String,
    /// Path pattern in axum syntax; `{name}` segments are captured (`/api/v1/ws/{client_id}`).
    pub path: String,
    #[serde(default)]
    pub auth: AuthSpec,
    /// Topic templates joined on connect. Placeholders: `{sub}`, `{org}` (the
    /// template is skipped when the principal has no org), `{role}` (one topic
    /// per role) and `{path.NAME}` (a captured path segment).
    #[serde(default)]
    pub join: Vec<String>,
    #[serde(default)]
    pub frame: FrameSpec,
    #[serde(default)]
    pub heartbeat: Option<HeartbeatSpec>,
    #[serde(default)]
    pub snapshot: Option<SnapshotSpec>,
    /// Client frame `type` value → what it means. Types not listed follow `on_unknown`.
    #[serde(default)]
    pub commands: BTreeMap<String, Command>,
    /// What to do with client frames that are not JSON or whose type is not in `commands`.
    #[serde(default)]
    pub on_unknown: UnknownFrame,
    #[serde(default)]
    pub close: CloseSpec,
    /// Typed error frames sent before closing (or instead of closing) a
    /// connection; none when absent.
    #[serde(default)]
    pub errors: Option<ErrorFrameSpec>,
    /// Client-chosen channels (`subscribe` / `unsubscribe` commands).
    #[serde(default)]
    pub channels: Option<ChannelSpec>,
    /// The reply to a client `heartbeat` command.
    #[serde(default)]
    pub heartbeat_ack: Option<AckSpec>,
    /// At most one live connection per key across every replica (file
    /// organizer's `client_id`).
    #[serde(default)]
    pub exclusive: Option<ExclusiveSpec>,
    /// Online/offline events when a principal's first connection anywhere
    /// opens and its last one closes (AgentHQ's `agent.online`/`agent.offline`).
    #[serde(default)]
    pub presence: Option<PresenceSpec>,
    /// The resource the path names (`res:workflow-run:{path.id}`): it must be
    /// registered by the backend (else `not_found`) and allowed to the
    /// principal like a channel (else `forbidden`).
    #[serde(default)]
    pub resource: Option<ResourceSpec>,
    /// Also serve this route as Server-Sent Events to `Accept: text/event-stream`.
    #[serde(default)]
    pub sse: Option<SseSpec>,
    /// Client frames forwarded to the backend through a Redis stream.
    #[serde(default)]
    pub upstream: Option<UpstreamSpec>,
    /// Replay of the first joined topic's history on connect (WebSocket).
    #[serde(default)]
    pub resume: Option<ResumeSpec>,
}

/// History replay for WebSocket connections: from a resume position given in
/// the query, or the last events on join. SSE always resumes from
/// `Last-Event-ID`. Either way, a position older than the history window is
/// reported with a `gap_type` frame instead of silently skipping events.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeSpec {
    /// Query parameter holding the offset of the last event the client saw.
    #[serde(default = "default_resume_query")]
    pub query: String,
    /// Without a resume position, send this many of the latest events on join.
    #[serde(default)]
    pub replay_last: usize,
    /// Frame type telling the client events were missed.
    #[serde(default = "default_gap_type")]
    pub gap_type: String,
}

fn default_resume_query() -> String {
    "since".to_owned()
}
fn default_gap_type() -> String {
    "herald.gap".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub topic: String,
    #[serde(default = "default_not_found_close")]
    pub not_found_close: u16,
    #[serde(default = "default_forbidden_close")]
    pub forbidden_close: u16,
}

fn default_not_found_close() -> u16 {
    4404
}
fn default_forbidden_close() -> u16 {
    4403
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SseSpec {
    /// Interval of `:` keep-alive comments.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_ms: u64,
}

fn default_keep_alive() -> u64 {
    15_000
}

/// Client frames of these types go to the Redis stream `stream`, as
/// `{source, sub, received_ms, frame}`; anything else is answered with an
/// error frame and never forwarded.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// Stream name (`herald:upstream:{NAME}`).
    pub stream: String,
    /// Accepted frame types (`task_progress`, `task_log`, `task_completed`).
    pub types: Vec<String>,
    /// Template naming the sender (`{path.id}`: the agent).
    #[serde(default = "default_presence_key")]
    pub source: String,
    /// Largest forwarded frame, in bytes.
    #[serde(default = "default_upstream_max")]
    pub max_bytes: usize,
}

fn default_upstream_max() -> usize {
    16 * 1024
}

/// Cluster-wide presence of a key (an agent): exactly one online event when
/// its first connection on any replica opens, one offline event when its
/// last one closes or the replica holding it dies (after `lease_ms`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceSpec {
    /// Topic template of the audience (`org:{org}`).
    pub topic: String,
    /// Template of whose presence it is (`{sub}`).
    #[serde(default = "default_presence_key")]
    pub key: String,
    /// Only principals holding one of these roles have presence; empty: everyone.
    #[serde(default)]
    pub roles: Vec<String>,
    pub online: String,
    pub offline: String,
    /// Topic template whose stored snapshot is the events' payload (the
    /// agent object); `{"id": key}` when none is stored.
    #[serde(default)]
    pub data_topic: Option<String>,
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

fn default_presence_key() -> String {
    "{sub}".to_owned()
}

/// Client-chosen channels: a channel name maps to a topic through a template.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// Field of the subscribe/unsubscribe frame holding the channel name; a
    /// dotted path (`data.channel`) reads a member of a nested object.
    #[serde(default = "default_channel_field")]
    pub field: String,
    /// Topic template; `{channel}` is the channel name, plus the join
    /// placeholders (`{sub}`, `{org}`, `{path.NAME}`).
    pub topic: String,
    /// Channels one connection may hold at once.
    #[serde(default = "default_max_channels")]
    pub max_per_connection: usize,
    /// Longest channel name, in bytes. Names use ASCII letters, digits and `._-@+=`.
    #[serde(default = "default_max_channel_len")]
    pub max_len: usize,
    /// Field of the subscribe frame that may hold a resume position: the
    /// channel's events after it are replayed before live ones. A dotted
    /// path reads a nested member, as for `field`.
    #[serde(default)]
    pub position_field: Option<String>,
    /// Frames confirming a subscribe or unsubscribe; none when absent.
    #[serde(default)]
    pub acks: Option<ChannelAcks>,
    /// Who may join a channel.
    #[serde(default)]
    pub authorize: ChannelAuthorization,
}

/// Who may join a client-chosen channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelAuthorization {
    /// Principals whose JWT `topics` or backend grants match the channel's
    /// topic, and admins.
    #[default]
    Grants,
    /// Every authenticated principal: for topic templates scoped by the
    /// principal's own `{org}` or `{sub}`, which validation requires.
    Any,
}

/// Acknowledgements of channel commands, in the route's frame shape:
/// `{"event":"subscribed","data":{"channel":ID}}` for a nested shape.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelAcks {
    /// Event type confirming a subscribe (also sent when already subscribed).
    pub subscribed: String,
    /// Event type confirming an unsubscribe.
    pub unsubscribed: String,
    /// Payload member naming the channel.
    #[serde(default = "default_channel_field")]
    pub field: String,
}

/// A field of a client frame: `name`, or `a.b` for member `b` of object `a`.
pub fn frame_field<'a>(
    frame: &'a serde_json::Map<String, serde_json::Value>,
    path: &str,
) -> Option<&'a serde_json::Value> {
    let mut parts = path.split('.');
    let mut value = frame.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

fn check_field_path(path: &str) -> Result<(), String> {
    match path.split('.').all(|p| !p.is_empty()) {
        true => Ok(()),
        false => Err(format!(
            "`{path}` must be a field name or a dotted path of names"
        )),
    }
}

fn default_channel_field() -> String {
    "channel".to_owned()
}
fn default_max_channels() -> usize {
    100
}
fn default_max_channel_len() -> usize {
    128
}

/// A small server reply frame: `{"type": event_type, timestamp_field: now}`,
/// or with `in_data` the timestamp inside the shape's data field:
/// `{"event":"heartbeat_ack","data":{"timestamp":now}}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AckSpec {
    pub event_type: String,
    #[serde(default)]
    pub timestamp_field: Option<String>,
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
    /// Put the timestamp in the frame's payload (nested: `data`) instead of
    /// beside the type.
    #[serde(default)]
    pub in_data: bool,
}

/// One live connection per key, cluster-wide, held as a lease the replica renews.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExclusiveSpec {
    /// Template of the key (`{path.client_id}`).
    pub key: String,
    /// Lease length: how long a key stays taken after its replica died.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Close code for a connection refused because the key is taken.
    #[serde(default = "default_conflict_close")]
    pub close_code: u16,
}

fn default_lease_ms() -> u64 {
    10_000
}
fn default_conflict_close() -> u16 {
    4409
}

/// Error frames: `{"type":"error","code":"unauthorized","message":"Token expired"}`,
/// plus the frame's timestamp field when the profile has one (nested frames
/// carry code and message in the data field). Codes: `unauthorized`,
/// `forbidden`, `not_found`, `rate_limited`, `internal_error`, `bad_request`,
/// `conflict`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorFrameSpec {
    #[serde(default = "default_error_type")]
    pub event_type: String,
    #[serde(default = "default_code_field")]
    pub code_field: String,
    #[serde(default = "default_message_field")]
    pub message_field: String,
    /// Timestamp field of error frames, when the frame shape has none.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// Wire codes replacing the default ones, by default code
    /// (`{ conflict = "CLIENT_ID_IN_USE" }`).
    #[serde(default)]
    pub codes: BTreeMap<String, String>,
}

impl ErrorFrameSpec {
    /// The wire code for one of the gateway's error codes.
    pub fn code<'a>(&'a self, code: &'a str) -> &'a str {
        self.codes.get(code).map_or(code, String::as_str)
    }
}

impl Default for ErrorFrameSpec {
    fn default() -> Self {
        Self {
            event_type: default_error_type(),
            code_field: default_code_field(),
            message_field: default_message_field(),
            timestamp_field: None,
            codes: BTreeMap::new(),
        }
    }
}

fn default_error_type() -> String {
    "error".to_owned()
}
fn default_code_field() -> String {
    "code".to_owned()
}
fn default_message_field() -> String {
    "message".to_owned()
}

/// Where credentials are read from, in order; the first source present decides.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    #[serde(default)]
    pub sources: Vec<AuthSource>,
    /// Close code sent when authentication fails (after accepting the upgrade,
    /// so browsers can see the code).
    #[serde(default = "default_auth_close")]
    pub failure_close_code: u16,
    #[serde(default = "default_auth_reason")]
    pub failure_reason: String,
    /// Close reason when no credential was given at all; `failure_reason`
    /// when absent.
    #[serde(default)]
    pub missing_reason: Option<String>,
    /// JWT claim names the principal is read from.
    #[serde(default)]
    pub claims: ClaimNames,
    /// Origins allowed when the credential is a cookie (cross-site WebSocket
    /// hijacking guard). Empty: only the request's own host.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How long a `first_message` source waits for the client's first frame
    /// before closing as unauthorized.
    #[serde(default = "default_first_message_timeout")]
    pub first_message_timeout_ms: u64,
    /// JWTs must name one of these in `aud`; empty: `aud` is not checked.
    #[serde(default)]
    pub audience: Vec<String>,
    /// JWTs must carry this `iss`; none: `iss` is not checked.
    #[serde(default)]
    pub issuer: Option<String>,
}

/// Which JWT claims hold the principal's org and roles (`sub`, `exp` and
/// `topics` are fixed). A claim may be a string or a number.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimNames {
    #[serde(default = "default_org_claim")]
    pub org: String,
    #[serde(default = "default_roles_claim")]
    pub roles: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            org: default_org_claim(),
            roles: default_roles_claim(),
        }
    }
}

fn default_org_claim() -> String {
    "org".to_owned()
}
fn default_roles_claim() -> String {
    "roles".to_owned()
}

fn default_first_message_timeout() -> u64 {
    5000
}

fn default_auth_close() -> u16 {
    1008
}
fn default_auth_reason() -> String {
    "authentication failed".to_owned()
}

/// One place a credential may be found.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSource {
    pub from: AuthLocation,
    /// Query parameter, cookie or header name.
    pub name: String,
    /// Credential kinds tried, in order.
    pub accept: Vec<CredentialKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthLocation {
    Query,
    Cookie,
    /// A header; `Bearer ` is stripped when present.
    Header,
    /// The string field `name` of the client's first frame (a JSON object,
    /// such as `{"type":"auth","token":"…"}`), read after the upgrade. Used
    /// only when no other source of the profile carries a credential.
    FirstMessage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// HS256 JWT signed with `HERALD_JWT_SECRET`.
    Jwt,
    /// `HERALD_ADMIN_KEY`, compared in constant time; yields the admin principal.
    AdminKey,
    /// An API key registered by the backend (stored hashed).
    ApiKey,
    /// A session token registered by the backend (stored hashed, expires).
    Session,
}

/// How events and server frames are laid out on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrameSpec {
    pub style: FrameStyle,
    /// Name of the discriminator field.
    #[serde(default = "default_type_field")]
    pub type_field: String,
    /// Payload field for `nested` frames.
    #[serde(default = "default_data_field")]
    pub data_field: String,
    /// Timestamp field added to every server frame, if any.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
    /// Event frames also carry their history offset under this name, so a
    /// client can resume from it (`resume.query`).
    #[serde(default)]
    pub offset_field: Option<String>,
}

impl Default for FrameSpec {
    fn default() -> Self {
        Self {
            style: FrameStyle::Flat,
            type_field: default_type_field(),
            data_field: default_data_field(),
            timestamp_field: None,
            timestamp_format: TimestampFormat::default(),
            offset_field: None,
        }
    }
}

fn default_type_field() -> String {
    "type".to_owned()
}
fn default_data_field() -> String {
    "data".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FrameStyle {
    /// `{"type": T, ...data}`: the payload's fields beside the type (docsfy).
    Flat,
    /// `{"type": T, "data": data}` (kubegen, AgentHQ).
    Nested,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// `2026-11-23T15:04:05Z`.
    #[default]
    Rfc3339,
    /// `2026-11-23T15:04:05.123Z`.
    Rfc3339Millis,
    /// Unix milliseconds as a number.
    UnixMs,
}

/// Server-initiated application-level heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSpec {
    /// Time between pings.
    pub interval_ms: u64,
    /// Time the client has to answer one ping.
    pub timeout_ms: u64,
    /// Unanswered pings in a row after which the connection is closed.
    pub max_missed: u32,
    /// `type` of the ping frame.
    #[serde(default = "default_ping")]
    pub ping_type: String,
    /// Timestamp field of the ping frame, when the frame shape has none.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// Close code when the client stops answering.
    #[serde(default = "default_heartbeat_close")]
    pub close_code: u16,
    #[serde(default = "default_heartbeat_reason")]
    pub close_reason: String,
}

fn default_ping() -> String {
    "ping".to_owned()
}
fn default_heartbeat_close() -> u16 {
    1001
}
fn default_heartbeat_reason() -> String {
    "heartbeat timeout".to_owned()
}

/// A full-state frame sent on connect and after chosen events.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSpec {
    /// `type` of the snapshot frame (`sync`).
    pub event_type: String,
    /// Topic templates whose stored snapshot is used; the first one stored wins.
    pub topics: Vec<String>,
    /// Payload when none is stored.
    #[serde(default = "empty_object")]
    pub empty: serde_json::Value,
    /// Event types after which a fresh snapshot follows (`status_change`).
    #[serde(default)]
    pub resend_after: Vec<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// What a client frame means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Answers a heartbeat ping.
    Pong,
    /// Join the channel named by the frame's `channels.field` (needs `channels`).
    Subscribe,
    /// Leave a channel joined with `subscribe`.
    Unsubscribe,
    /// A client-initiated heartbeat, answered with `heartbeat_ack` (needs `heartbeat_ack`).
    Heartbeat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFrame {
    /// Drop it silently (docsfy: "Client messages other than valid JSON pong are ignored").
    #[default]
    Ignore,
    /// Answer with a `bad_request` error frame (needs `errors`).
    Error,
}

/// Close codes for the gateway's own reasons.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseSpec {
    /// Sent to every socket when the replica shuts down.
    #[serde(default = "default_shutdown_close")]
    pub shutdown: u16,
    /// Sent when a client cannot keep up with its events (see `docs/protocol.md`).
    #[serde(default = "default_slow_close")]
    pub slow_consumer: u16,
    /// Sent when the backend disconnects the user (server API
    /// `POST /users/{sub}/disconnect`).
    #[serde(default = "default_disconnect_close")]
    pub disconnect: u16,
    /// Sent when the gateway cannot serve the connection (broker or store
    /// unavailable).
    #[serde(default = "default_internal_close")]
    pub internal_error: u16,
}

impl Default for CloseSpec {
    fn default() -> Self {
        Self {
            shutdown: default_shutdown_close(),
            slow_consumer: default_slow_close(),
            disconnect: default_disconnect_close(),
            internal_error: default_internal_close(),
        }
    }
}

fn default_shutdown_close() -> u16 {
    1001
}
fn default_slow_close() -> u16 {
    1013
}
fn default_disconnect_close() -> u16 {
    1008
}
fn default_internal_close() -> u16 {
    1011
}

/// Topics one resume position can name: a route whose connections may hold
/// more (joined topics plus `channels.max_per_connection`) cannot carry
/// positions and is refused.
pub const MAX_POSITION_TOPICS: usize = 64;

/// A profile setting that cannot work, with the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ProfileError {
    pub key: String,
    pub reason: String,
}

impl RouteProfile {
    /// Check everything serde cannot: reachable values, consistent timings,
    /// well-formed templates. `index` is the profile's position for error keys.
    pub fn validate(&self, index: usize) -> Result<(), ProfileError> {
        let key = |field: &str| format!("profiles[{index}].{field}");
        let err = |field: &str, reason: String| {
            Err(ProfileError {
                key: key(field),
                reason,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return err(
                "name",
                format!(
                    "`{}` must be non-empty letters, digits, `_` or `-`",
                    self.name
                ),
            );
        }
        if !self.path.starts_with('/') {
            return err("path", format!("`{}` must start with `/`", self.path));
        }
        if self.auth.sources.is_empty() {
            return err(
                "auth.sources",
                "at least one credential source is required".to_owned(),
            );
        }
        for (i, s) in self.auth.sources.iter().enumerate() {
            if s.name.is_empty() {
                return err(
                    &format!("auth.sources[{i}].name"),
                    "must not be empty".to_owned(),
                );
            }
            if s.accept.is_empty() {
                return err(
                    &format!("auth.sources[{i}].accept"),
                    "must list at least one credential kind".to_owned(),
                );
            }
        }
        let first_message = self
            .auth
            .sources
            .iter()
            .filter(|s| s.from == AuthLocation::FirstMessage)
            .count();
        if first_message > 1 {
            return err(
                "auth.sources",
                "at most one `first_message` source".to_owned(),
            );
        }
        if first_message == 1 && self.auth.first_message_timeout_ms == 0 {
            return err(
                "auth.first_message_timeout_ms",
                "must be greater than zero".to_owned(),
            );
        }
        check_close_code(self.auth.failure_close_code)
            .or_else(|r| err("auth.failure_close_code", r))?;
        check_close_code(self.close.shutdown).or_else(|r| err("close.shutdown", r))?;
        check_close_code(self.close.slow_consumer).or_else(|r| err("close.slow_consumer", r))?;
        check_close_code(self.close.disconnect).or_else(|r| err("close.disconnect", r))?;
        check_close_code(self.close.internal_error).or_else(|r| err("close.internal_error", r))?;
        if self.auth.claims.org.is_empty() || self.auth.claims.roles.is_empty() {
            return err("auth.claims", "claim names must not be empty".to_owned());
        }
        let params = path_params(&self.path);
        for (i, t) in self.join.iter().enumerate() {
            check_template(t, &params).or_else(|r| err(&format!("join[{i}]"), r))?;
        }
        if let Some(hb) = &self.heartbeat {
            if hb.interval_ms == 0 {
                return err(
                    "heartbeat.interval_ms",
                    "must be greater than zero".to_owned(),
                );
            }
            if hb.timeout_ms == 0 || hb.timeout_ms > hb.interval_ms {
                return err(
                    "heartbeat.timeout_ms",
                    "must be greater than zero and at most interval_ms".to_owned(),
                );
            }
            if hb.max_missed == 0 {
                return err("heartbeat.max_missed", "must be at least 1".to_owned());
            }
            check_close_code(hb.close_code).or_else(|r| err("heartbeat.close_code", r))?;
            if !self.commands.values().any(|c| *c == Command::Pong) {
                return err(
                    "commands",
                    "a heartbeat needs a command mapped to `pong`".to_owned(),
                );
            }
        }
        let uses = |c: Command| self.commands.values().any(|v| *v == c);
        if (uses(Command::Subscribe) || uses(Command::Unsubscribe)) && self.channels.is_none() {
            return err(
                "channels",
                "subscribe/unsubscribe commands need a `channels` section".to_owned(),
            );
        }
        if uses(Command::Heartbeat) && self.heartbeat_ack.is_none() {
            return err(
                "heartbeat_ack",
                "a `heartbeat` command needs a `heartbeat_ack` section".to_owned(),
            );
        }
        if let Some(ch) = &self.channels {
            if !ch.topic.contains("{channel}") {
                return err("channels.topic", "must contain `{channel}`".to_owned());
            }
            check_template(&ch.topic.replace("{channel}", "x"), &params)
                .or_else(|r| err("channels.topic", r))?;
            check_field_path(&ch.field).or_else(|r| err("channels.field", r))?;
            if ch.authorize == ChannelAuthorization::Any
                && !(ch.topic.contains("{org}") || ch.topic.contains("{sub}"))
            {
                return err(
                    "channels.authorize",
                    "`any` needs a topic template scoped by `{org}` or `{sub}`, else every \
                     principal could join every channel"
                        .to_owned(),
                );
            }
            if let Some(f) = &ch.position_field {
                check_field_path(f).or_else(|r| err("channels.position_field", r))?;
            }
            if let Some(acks) = &ch.acks
                && (acks.subscribed.is_empty()
                    || acks.unsubscribed.is_empty()
                    || acks.field.is_empty())
            {
                return err(
                    "channels.acks",
                    "subscribed, unsubscribed and field must not be empty".to_owned(),
                );
            }
            if ch.max_per_connection == 0 || ch.max_len == 0 {
                return err(
                    "channels",
                    "max_per_connection and max_len must be greater than zero".to_owned(),
                );
            }
        }
        if self.carries_positions() {
            // SSE cannot subscribe channels; a WebSocket with positions can.
            let channels = match self.websocket_positions() {
                true => self.channels.as_ref().map_or(0, |c| c.max_per_connection),
                false => 0,
            };
            let held = self.join.len() + channels;
            if held > MAX_POSITION_TOPICS {
                return err(
                    if channels > 0 {
                        "channels.max_per_connection"
                    } else {
                        "join"
                    },
                    format!(
                        "a connection of this route may hold {held} topics (join templates plus \
                         channels.max_per_connection) but a resume position names at most \
                         {MAX_POSITION_TOPICS}: lower it, or serve the route without positions \
                         (no `frame.offset_field`)"
                    ),
                );
            }
        }
        if let Some(ex) = &self.exclusive {
            check_template(&ex.key, &params).or_else(|r| err("exclusive.key", r))?;
            if ex.lease_ms < 300 {
                return err("exclusive.lease_ms", "must be at least 300".to_owned());
            }
            check_close_code(ex.close_code).or_else(|r| err("exclusive.close_code", r))?;
        }
        if let Some(pr) = &self.presence {
            check_template(&pr.topic, &params).or_else(|r| err("presence.topic", r))?;
            check_template(&pr.key, &params).or_else(|r| err("presence.key", r))?;
            if let Some(t) = &pr.data_topic {
                check_template(t, &params).or_else(|r| err("presence.data_topic", r))?;
            }
            if pr.lease_ms < 300 {
                return err("presence.lease_ms", "must be at least 300".to_owned());
            }
            if pr.online.is_empty() || pr.offline.is_empty() {
                return err(
                    "presence",
                    "online and offline event types must not be empty".to_owned(),
                );
            }
        }
        if let Some(r) = &self.resource {
            check_template(&r.topic, &params).or_else(|r| err("resource.topic", r))?;
            check_close_code(r.not_found_close).or_else(|r| err("resource.not_found_close", r))?;
            check_close_code(r.forbidden_close).or_else(|r| err("resource.forbidden_close", r))?;
        }
        if let Some(u) = &self.upstream {
            if u.stream.is_empty()
                || !u
                    .stream
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return err(
                    "upstream.stream",
                    "must be letters, digits, `-` or `_`".to_owned(),
                );
            }
            check_template(&u.source, &params).or_else(|r| err("upstream.source", r))?;
            if u.types.is_empty() || u.max_bytes == 0 {
                return err(
                    "upstream",
                    "types must not be empty and max_bytes must be positive".to_owned(),
                );
            }
        }
        if let Some(s) = &self.sse
            && s.keep_alive_ms == 0
        {
            return err("sse.keep_alive_ms", "must be greater than zero".to_owned());
        }
        if self.on_unknown == UnknownFrame::Error && self.errors.is_none() {
            return err("on_unknown", "`error` needs an `errors` section".to_owned());
        }
        if let Some(snap) = &self.snapshot {
            if snap.event_type.is_empty() {
                return err("snapshot.event_type", "must not be empty".to_owned());
            }
            for (i, t) in snap.topics.iter().enumerate() {
                check_template(t, &params).or_else(|r| err(&format!("snapshot.topics[{i}]"), r))?;
            }
            if self.frame.style == FrameStyle::Flat && !snap.empty.is_object() {
                return err(
                    "snapshot.empty",
                    "must be a JSON object for flat frames".to_owned(),
                );
            }
        }
        Ok(())
    }
}

impl RouteProfile {
    /// Whether clients of this route are sent resume positions: SSE always
    /// (`id:`), WebSocket with `resume` and `frame.offset_field`.
    pub fn carries_positions(&self) -> bool {
        self.sse.is_some() || self.websocket_positions()
    }

    /// Whether WebSocket clients of this route are sent resume positions
    /// (`resume` and `frame.offset_field`).
    pub fn websocket_positions(&self) -> bool {
        self.resume.is_some() && self.frame.offset_field.is_some()
    }

    /// Whether a connection of this route can only ever hold one topic, so
    /// its position is that topic's plain offset.
    pub fn holds_one_topic(&self) -> bool {
        self.join.len() == 1 && !self.join[0].contains("{role}") && self.channels.is_none()
    }
}

/// Names captured by `{name}` segments of an axum path.
pub fn path_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|s| s.trim_start_matches('*').to_owned())
        .collect()
}

fn check_template(t: &str, params: &[String]) -> Result<(), String> {
    let mut rest = t;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("`{t}` has an unclosed `{{`"));
        };
        let name = &rest[start + 1..start + len];
        let known = matches!(name, "sub" | "org" | "role")
            || name
                .strip_prefix("path.")
                .is_some_and(|p| params.iter().any(|q| q == p));
        if !known {
            return Err(format!(
                "`{t}` uses unknown placeholder `{{{name}}}` (known: sub, org, role, path.NAME)"
            ));
        }
        rest = &rest[start + len + 1..];
    }
    if rest.contains('}') {
        return Err(format!("`{t}` has an unmatched `}}`"));
    }
    Ok(())
}

/// Close codes an endpoint may send: 1000–1003, 1007–1014 and 3000–4999.
fn check_close_code(code: u16) -> Result<(), String> {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => Ok(()),
        _ => Err(format!("{code} is not a close code a server may send")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> RouteProfile {
        toml_like(
            r#"{"name":"p","path":"/x/{id}","auth":{"sources":[{"from":"query","name":"token","accept":["jwt"]}]},
                "join":["user:{sub}","res:x:{path.id}"],"commands":{"pong":"pong"},
                "heartbeat":{"interval_ms":1000,"timeout_ms":500,"max_missed":2}}"#,
        )
    }

    fn toml_like(json: &str) -> RouteProfile {
        serde_json::from_str(json).expect("profile parses")
    }

    #[test]
    fn valid_profile_passes() {
        assert_eq!(minimal().validate(0), Ok(()));
    }

    #[test]
    fn errors_name_the_key() {
        let mut p = minimal();
        p.join.push("res:x:{path.nope}".into());
        let e = p.validate(3).expect_err("unknown placeholder");
        assert_eq!(e.key, "profiles[3].join[2]");
        let mut p = minimal();
        if let Some(hb) = p.heartbeat.as_mut() {
            hb.timeout_ms = 5000;
        }
        assert_eq!(
            p.validate(0).expect_err("timeout").key,
            "profiles[0].heartbeat.timeout_ms"
        );
        let mut p = minimal();
        p.close.shutdown = 1006;
        assert_eq!(
            p.validate(0).expect_err("code").key,
            "profiles[0].close.shutdown"
        );
        let mut p = minimal();
        let first = AuthSource {
            from: AuthLocation::FirstMessage,
            name: "token".into(),
            accept: vec![CredentialKind::Jwt],
        };
        p.auth.sources.extend([first.clone(), first]);
        assert_eq!(
            p.validate(0).expect_err("two first_message").key,
            "profiles[0].auth.sources"
        );
        let mut p = minimal();
        p.commands.clear();
        assert_eq!(p.validate(0).expect_err("pong").key, "profiles[0].commands");
    }

    #[test]
    fn a_route_whose_position_cannot_name_every_topic_is_refused() {
        let mut p = minimal();
        p.sse = Some(SseSpec {
            keep_alive_ms: 1000,
        });
        assert_eq!(p.validate(0), Ok(()), "two topics");
        p.channels = Some(ChannelSpec {
            field: "channel".into(),
            topic: "res:x:{channel}".into(),
            max_per_connection: MAX_POSITION_TOPICS - 1,
            max_len: 10,
            position_field: None,
            acks: None,
            authorize: ChannelAuthorization::Grants,
        });
        assert_eq!(p.validate(0), Ok(()), "SSE cannot subscribe channels");
        p.join = (0..=MAX_POSITION_TOPICS)
            .map(|i| format!("res:x{i}:{{path.id}}"))
            .collect();
        let e = p.validate(0).expect_err("65 joined topics");
        assert_eq!(e.key, "profiles[0].join");
        assert!(e.reason.contains("at most 64"), "{}", e.reason);
        p.join.truncate(2);
        // Without positions on the wire there is nothing to bound.
        p.sse = None;
        assert_eq!(p.validate(0), Ok(()));
        p.resume = Some(serde_json::from_str("{}").expect("resume"));
        assert_eq!(p.validate(0), Ok(()), "resume without an offset field");
        p.frame.offset_field = Some("offset".into());
        let e = p
            .validate(0)
            .expect_err("WebSocket frames carrying positions");
        assert_eq!(e.key, "profiles[0].channels.max_per_connection");
        assert!(!p.holds_one_topic());
    }

    #[test]
    fn channel_options_are_checked() {
        let mut p = minimal();
        let mut ch: ChannelSpec =
            serde_json::from_str(r#"{"topic":"res:c:{channel}","field":"data.channel"}"#)
                .expect("channels");
        p.channels = Some(ch.clone());
        assert_eq!(p.validate(0), Ok(()));
        let v = serde_json::json!({"event":"subscribe","data":{"channel":"general"}});
        let frame = v.as_object().expect("object");
        assert_eq!(
            frame_field(frame, "data.channel").and_then(|v| v.as_str()),
            Some("general")
        );
        assert_eq!(frame_field(frame, "data.missing"), None);
        assert_eq!(frame_field(frame, "event.channel"), None, "not an object");
        ch.field = "data..channel".into();
        p.channels = Some(ch.clone());
        assert_eq!(
            p.validate(0).expect_err("empty segment").key,
            "profiles[0].channels.field"
        );
        ch.field = "channel".into();
        ch.authorize = ChannelAuthorization::Any;
        p.channels = Some(ch.clone());
        assert_eq!(
            p.validate(0).expect_err("unscoped any").key,
            "profiles[0].channels.authorize"
        );
        ch.topic = "res:c:{org}:{channel}".into();
        p.channels = Some(ch);
        assert_eq!(p.validate(0), Ok(()));
        p.auth.claims.org = String::new();
        assert_eq!(
            p.validate(0).expect_err("claim").key,
            "profiles[0].auth.claims"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<RouteProfile, _> =
            serde_json::from_str(r#"{"name":"p","path":"/","colour":1}"#);
        assert!(r.is_err());
    }
}
