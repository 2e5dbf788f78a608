//! One client connection: one task that owns the socket.
//!
//! The task joins the profile's topics, sends the snapshot, then runs a
//! biased `select!` over shutdown, the slow-consumer signal, its outbound
//! queue, the client's frames and the heartbeat timer. Queued events leave
//! in batches (fed, then flushed once). Every write has a deadline. Whatever
//! ends the loop becomes a [`CloseReason`], sent as the profile's close code.

mod admission;
mod channels;
mod close;
mod heartbeat;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use herald_shared::envelope::{CONTROL_RESYNC, CONTROL_REVOKE};
use herald_shared::profile::{Command, UnknownFrame};
use herald_shared::{Principal, Topic};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use crate::AppState;
use crate::hub::Subscriber;
use crate::limits::MessageBudget;
use crate::profile::CompiledProfile;
use crate::profile::wire::{PreparedEvent, encode_ack, encode_error, encode_event, now_ms};
use crate::replay;

pub use admission::admit;
use channels::{Channels, Refusal};
pub use close::{CloseReason, RATE_LIMITED_CLOSE};
use heartbeat::{Heartbeat, Tick};

/// Events written per flush at most, so a busy topic cannot starve the
/// client's frames or the heartbeat.
const BATCH: usize = 64;
/// How long to wait for the client's close reply after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Everything a connection task needs besides its socket.
#[derive(Debug)]
pub struct Connection {
    pub app: Arc<AppState>,
    pub profile: Arc<CompiledProfile>,
    pub principal: Principal,
    pub path: HashMap<String, String>,
    /// Offset of the last event the client saw (`resume.query`), to replay from.
    pub resume_from: Option<String>,
}

impl Connection {
    /// Serve the socket until it closes, then clean up.
    pub async fn serve(self, mut socket: WebSocket) {
        let metrics = &self.profile.metrics;
        metrics.opened.increment(1);
        metrics.connections.increment(1.0);
        let (sub, rx) = Subscriber::new(self.app.config.limits.outbound_queue);
        let holder = format!("{}-{}", self.app.replica_id, sub.id);
        let admitted = admit(&self.app, &self.profile, &self.principal, &self.path).await;
        let reason = match async {
            Ok::<_, CloseReason>((admitted?, self.take_lease(&holder).await?))
        }
        .await
        {
            Ok((_slot, lease)) => {
                let present = self.join_presence(&holder).await;
                let reason = self.run(&mut socket, &sub, rx).await;
                if present {
                    self.app.presence.leave(&holder).await;
                }
                self.app.hub.leave_all(&sub).await;
                if let Some(key) = lease {
                    self.app.leases.release(&key, &holder).await;
                }
                reason
            }
            Err(reason) => reason,
        };
        finish(&mut socket, &self.app, &self.profile, reason).await;
        metrics.connections.decrement(1.0);
        metrics.closed(reason.label());
        tracing::debug!(route = %self.profile.spec.name, reason = reason.label(), "connection closed");
    }

    async fn run(
        &self,
        socket: &mut WebSocket,
        sub: &Arc<Subscriber>,
        mut rx: mpsc::Receiver<Arc<PreparedEvent>>,
    ) -> CloseReason {
        let topics = match self.profile.join_topics(&self.principal, &self.path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "principal yields an invalid topic");
                return CloseReason::Unauthorized("Identity cannot be served");
            }
        };
        // The latest events are read before subscribing and completed after
        // it, so events published in between are neither lost nor reordered.
        let latest = match (&self.profile.spec.resume, topics.first(), &self.resume_from) {
            (Some(spec), Some(primary), None) if spec.replay_last > 0 => {
                Some(replay::latest(&self.app, primary, spec.replay_last).await)
            }
            _ => None,
        };
        for topic in &topics {
            if let Err(e) = self.app.hub.join(topic, sub).await {
                tracing::warn!(error = %e, "cannot subscribe");
                return CloseReason::Internal;
            }
        }
        // Subscribed before the snapshot is read: an update made after the
        // snapshot was stored reaches the client as an event after it.
        if self.profile.spec.snapshot.is_some() {
            match self.snapshot_frame().await {
                Some(frame) => {
                    if let Err(r) = self.write(socket, [frame]).await {
                        return r;
                    }
                }
                None => return CloseReason::Internal,
            }
        }

        let shutdown = self.app.shutdown.token();
        let mut drain_at: Option<Instant> = None;
        let mut heartbeat = self
            .profile
            .spec
            .heartbeat
            .as_ref()
            .map(|spec| Heartbeat::new(spec, Instant::now()));
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let timer = sleep_until(heartbeat.as_ref().map_or(far, Heartbeat::deadline));
        tokio::pin!(timer);
        // A credential with an expiry (a JWT) ends the stream when it expires.
        let expires_at = self
            .principal
            .exp
            .map(|exp| Instant::now() + seconds_until(exp));
        let expiry = sleep_until(expires_at.unwrap_or(far));
        tokio::pin!(expiry);
        let mut channels = Channels::default();
        let limits = &self.app.config.limits;
        let mut budget = MessageBudget::new(
            limits.client_messages_per_second,
            limits.client_message_burst,
        );
        if let Err(r) = self
            .replay_history(socket, &topics, latest, &mut channels)
            .await
        {
            return r;
        }
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if drain_at.is_none() => {
                    drain_at = Some(Instant::now() + self.app.shutdown.close_delay());
                }
                _ = sleep_until(drain_at.unwrap_or(far)), if drain_at.is_some() => return CloseReason::Shutdown,
                _ = sub.slow_consumer() => return CloseReason::SlowConsumer,
                _ = &mut expiry, if expires_at.is_some() => return CloseReason::Unauthorized("Token expired"),
                event = rx.recv() => {
                    let Some(event) = event else { return CloseReason::Internal };
                    if let Err(r) = self.write_events(socket, sub, event, &mut rx, &mut channels).await {
                        return r;
                    }
                }
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(_) | Message::Binary(_))) if !budget.take(Instant::now()) => {
                        return CloseReason::Flood;
                    }
                    Some(Ok(Message::Text(text))) => {
                        let frame = self.client_frame(socket, sub, text.as_str(), heartbeat.as_mut(), &mut channels);
                        if let Err(r) = frame.await {
                            return r;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return CloseReason::ClientClosed,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return CloseReason::from_socket_error(&e),
                },
                _ = &mut timer, if heartbeat.is_some() => {
                    let Some(hb) = heartbeat.as_mut() else { continue };
                    match hb.fire(Instant::now()) {
                        Tick::SendPing => {
                            let ping = self.app.ping_frame(&self.profile);
                            if let Err(r) = self.write(socket, [ping]).await {
                                return r;
                            }
                        }
                        Tick::Missed => {}
                        Tick::Dead => return CloseReason::HeartbeatTimeout,
                    }
                    timer.as_mut().reset(hb.deadline());
                }
            }
            if let Some(hb) = &heartbeat
                && timer.deadline() != hb.deadline()
            {
                timer.as_mut().reset(hb.deadline());
            }
        }
    }

    /// With `resume`: a gap frame if the history no longer reaches the
    /// client's position, then the first topic's history after it (or its
    /// latest events), before any live event.
    async fn replay_history(
        &self,
        socket: &mut WebSocket,
        topics: &[Topic],
        latest: Option<replay::Replay>,
        channels: &mut Channels,
    ) -> Result<(), CloseReason> {
        let (Some(spec), Some(primary)) = (&self.profile.spec.resume, topics.first()) else {
            return Ok(());
        };
        let r = match (&self.resume_from, latest) {
            (Some(since), _) => replay::after(&self.app, primary, since, true).await,
            (None, Some(latest)) => replay::then_after(latest, &self.app, primary).await,
            (None, None) => return Ok(()),
        };
        tracing::debug!(events = r.events.len(), up_to = ?r.up_to, gap = r.gap, "history replayed");
        let shape = &self.app.profiles.shapes[self.profile.shape];
        let mut frames = Vec::with_capacity(r.events.len() + 1);
        if r.gap {
            let data = serde_json::json!({ "since": self.resume_from }).to_string();
            frames.push(encode_event(shape, &spec.gap_type, now_ms(), &data));
        }
        frames.extend(r.events.iter().map(|e| e.frame(self.profile.shape, shape)));
        channels.replayed = r.up_to.map(|o| (primary.clone(), o));
        self.write(socket, frames).await
    }

    /// Write one event and whatever else is queued, up to [`BATCH`], in one flush.
    async fn write_events(
        &self,
        socket: &mut WebSocket,
        sub: &Arc<Subscriber>,
        first: Arc<PreparedEvent>,
        rx: &mut mpsc::Receiver<Arc<PreparedEvent>>,
        channels: &mut Channels,
    ) -> Result<(), CloseReason> {
        let shape = &self.app.profiles.shapes[self.profile.shape];
        let mut frames: Vec<Utf8Bytes> = Vec::with_capacity(4);
        let mut next = Some(first);
        let mut taken = 0;
        let now = now_ms();
        while let Some(event) = next.take() {
            taken += 1;
            let env = &event.envelope;
            if env.is_control() {
                if env.event_type == CONTROL_RESYNC && self.profile.spec.snapshot.is_some() {
                    frames.extend(self.snapshot_frame().await);
                }
                if env.event_type == CONTROL_REVOKE
                    && let Ok(data) = serde_json::from_str::<serde_json::Value>(env.data.get())
                    && let Some(glob) = data.get("topic").and_then(|t| t.as_str())
                    && self.revoke(sub, channels, glob).await > 0
                {
                    frames.extend(
                        self.error_frame(Refusal::Forbidden("Subscription revoked").error()),
                    );
                }
            } else if channels.filtered(&env.topic)
                || replay::already_replayed(&channels.replayed, &event)
            {
                // Queued before the client left (or lost) the channel.
            } else {
                frames.push(event.frame(self.profile.shape, shape));
                self.profile
                    .metrics
                    .lag
                    .record(((now - env.ts).max(0) as f64) / 1000.0);
                if self.profile.resends_snapshot_after(&env.event_type) {
                    frames.extend(self.snapshot_frame().await);
                }
            }
            if taken < BATCH {
                next = rx.try_recv().ok();
            }
        }
        let n = frames.len() as u64;
        self.write(socket, frames).await?;
        self.profile.metrics.delivered.increment(n);
        Ok(())
    }

    async fn write(
        &self,
        socket: &mut WebSocket,
        frames: impl IntoIterator<Item = Utf8Bytes>,
    ) -> Result<(), CloseReason> {
        let deadline = Duration::from_millis(self.app.config.limits.write_timeout_ms);
        let io = async {
            for f in frames {
                socket.feed(Message::Text(f)).await?;
            }
            socket.flush().await
        };
        match timeout(deadline, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CloseReason::ClientGone),
            Err(_) => Err(CloseReason::WriteTimeout),
        }
    }

    /// A client frame: a command of the profile, or ignored. Refused
    /// commands are answered with the profile's error frame, if it has one.
    async fn client_frame(
        &self,
        socket: &mut WebSocket,
        sub: &Arc<Subscriber>,
        text: &str,
        heartbeat: Option<&mut Heartbeat>,
        channels: &mut Channels,
    ) -> Result<(), CloseReason> {
        let strict = self.profile.spec.on_unknown == UnknownFrame::Error;
        let Ok(serde_json::Value::Object(frame)) = serde_json::from_str::<serde_json::Value>(text)
        else {
            return match strict {
                true => {
                    self.refuse(socket, Refusal::BadRequest("Invalid JSON"))
                        .await
                }
                false => Ok(()),
            };
        };
        let Some(serde_json::Value::String(kind)) = frame.get(&self.profile.spec.frame.type_field)
        else {
            return match strict {
                true => {
                    self.refuse(socket, Refusal::BadRequest("Missing message type"))
                        .await
                }
                false => Ok(()),
            };
        };
        let channel = || {
            let field = self
                .profile
                .spec
                .channels
                .as_ref()
                .map_or("channel", |c| c.field.as_str());
            frame.get(field).and_then(|v| v.as_str())
        };
        let outcome = match self.profile.command(kind) {
            Some(Command::Pong) => {
                if let Some(hb) = heartbeat {
                    hb.pong();
                }
                Ok(())
            }
            Some(Command::Subscribe) => self.subscribe(sub, channels, channel()).await,
            Some(Command::Unsubscribe) => self.unsubscribe(sub, channels, channel()).await,
            Some(Command::Heartbeat) => {
                if let Some(ack) = &self.profile.spec.heartbeat_ack {
                    let shape = &self.app.profiles.shapes[self.profile.shape];
                    self.write(socket, [encode_ack(shape, ack, now_ms())])
                        .await?;
                }
                Ok(())
            }
            None if self.upstream_type(kind) => self.forward_upstream(text).await,
            None if self.profile.spec.on_unknown == UnknownFrame::Error => {
                Err(Refusal::BadRequest("Unknown message type"))
            }
            None => Ok(()),
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(refusal) => self.write(socket, self.error_frame(refusal.error())).await,
        }
    }

    async fn refuse(&self, socket: &mut WebSocket, refusal: Refusal) -> Result<(), CloseReason> {
        self.write(socket, self.error_frame(refusal.error())).await
    }

    fn upstream_type(&self, kind: &str) -> bool {
        self.profile
            .spec
            .upstream
            .as_ref()
            .is_some_and(|u| u.types.iter().any(|t| t == kind))
    }

    /// Forward a client frame to the backend's upstream stream.
    async fn forward_upstream(&self, text: &str) -> Result<(), Refusal> {
        let Some(spec) = &self.profile.spec.upstream else {
            return Ok(());
        };
        if text.len() > spec.max_bytes {
            return Err(Refusal::BadRequest("Message too large"));
        }
        let source = self
            .profile
            .upstream_source(&self.principal, &self.path)
            .unwrap_or_default();
        let fields = vec![
            ("source", source),
            ("sub", self.principal.sub.clone()),
            ("received_ms", now_ms().to_string()),
            ("frame", text.to_owned()),
        ];
        self.app
            .store
            .upstream_append(&spec.stream, fields)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot forward upstream");
                Refusal::Internal
            })
    }

    /// The profile's error frame, when it has error frames.
    fn error_frame(&self, error: (&str, &str)) -> Option<Utf8Bytes> {
        error_frame(&self.app, &self.profile, error)
    }

    /// The snapshot frame: the first stored snapshot of the profile's topics,
    /// or its empty payload. None when the store cannot be read (sending an
    /// empty full-replacement snapshot would wipe the client's state).
    async fn snapshot_frame(&self) -> Option<Utf8Bytes> {
        let spec = self.profile.spec.snapshot.as_ref()?;
        let topics = self
            .profile
            .snapshot_topics(&self.principal, &self.path)
            .ok()?;
        let mut payload = None;
        for topic in &topics {
            match self.app.store.snapshot(topic.as_str()).await {
                Ok(Some(json)) => match serde_json::from_str::<&RawValue>(&json) {
                    Ok(_) => {
                        payload = Some(json);
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "stored snapshot is not JSON; skipped"),
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read snapshot");
                    return None;
                }
            }
        }
        let payload = payload.unwrap_or_else(|| spec.empty.to_string());
        let shape = &self.app.profiles.shapes[self.profile.shape];
        Some(encode_event(shape, &spec.event_type, now_ms(), &payload))
    }
}

/// End a connection: the profile's error frame when the reason has one, then
/// the close frame, then a short wait for the client's close reply.
pub async fn finish(
    socket: &mut WebSocket,
    app: &AppState,
    profile: &CompiledProfile,
    reason: CloseReason,
) {
    if let Some(frame) = reason.error().and_then(|e| error_frame(app, profile, e)) {
        let deadline = Duration::from_millis(app.config.limits.write_timeout_ms);
        let _ = timeout(deadline, socket.send(Message::Text(frame))).await;
    }
    close(socket, reason.frame(&profile.spec)).await;
}

/// The profile's error frame for `(code, message)`, if it has error frames.
pub fn error_frame(
    app: &AppState,
    profile: &CompiledProfile,
    (code, message): (&str, &str),
) -> Option<Utf8Bytes> {
    let errors = profile.spec.errors.as_ref()?;
    let shape = &app.profiles.shapes[profile.shape];
    let frame = match &errors.timestamp_field {
        Some(field) if shape.timestamp_field.is_none() => {
            let mut with_ts = shape.clone();
            with_ts.timestamp_field = Some(field.clone());
            encode_error(&with_ts, errors, code, message, now_ms())
        }
        _ => encode_error(shape, errors, code, message, now_ms()),
    };
    Some(frame)
}

/// Time from now until a Unix timestamp in seconds (zero if past).
fn seconds_until(unix_secs: u64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(unix_secs).saturating_sub(now)
}

/// Send a close frame (when there is one to send) and wait briefly for the reply.
pub async fn close(socket: &mut WebSocket, frame: Option<CloseFrame>) {
    let Some(frame) = frame else { return };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = timeout(CLOSE_GRACE, async {
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
