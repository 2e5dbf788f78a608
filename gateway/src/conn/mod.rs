//! One client connection, whatever carries it: the session.
//!
//! The lifecycle is written here once, for every transport:
//! - open ([`Connection::open`]): admission (principal cap, the path's
//!   resource), the exclusive key's lease, presence, the topics, the latest
//!   history (read before subscribing), then the hub;
//! - serve ([`Session::serve`]): the snapshot, the replay (resume position
//!   or latest events, gap frame), then a biased `select!` over the one
//!   timer (heartbeat, token expiry, drain deadline), the hub's signals
//!   (slow consumer, drain, then queued events) and the client's frames. Queued
//!   events leave in batches (fed, then flushed once); every write has a
//!   deadline;
//! - release: presence, hub, lease, metrics; whatever ended the loop is a
//!   [`CloseReason`] the transport turns into its close.
//!
//! A [`Transport`] only moves frames: `ws` and `sse` are thin adapters.

mod admission;
mod channels;
mod close;
mod heartbeat;
mod position;
mod replay;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::future::join_all;
use herald_shared::envelope::{
    CONTROL_DISCONNECT, CONTROL_RESYNC, CONTROL_REVOKE, CONTROL_UNSUBSCRIBE,
};
use herald_shared::profile::{Command, UnknownFrame, frame_field};
use herald_shared::{Principal, Topic, now_ms};
use serde_json::value::RawValue;
use tokio::time::{Instant, sleep_until, timeout};

use crate::hub::{SharedEvent, Signal, Subscriber};
use crate::limits::{MessageBudget, Slot};
use crate::profile::CompiledProfile;
use crate::state::AppState;

pub use admission::admit;
use channels::{Channels, Refusal};
pub use close::{CloseReason, RATE_LIMITED_CLOSE};
use heartbeat::{Heartbeat, Tick};
use position::{Given, offset_text};
use replay::Cursor;
pub use replay::MAX_REPLAY;
pub use transport::{Inbound, Label, Outbound, Transport};

/// Events written per flush at most, so a busy topic cannot starve the
/// client's frames or the heartbeat.
const BATCH: usize = 64;

/// Who connected to which route: everything a session needs besides its transport.
#[derive(Debug)]
pub struct Connection {
    pub app: Arc<AppState>,
    pub profile: Arc<CompiledProfile>,
    pub principal: Principal,
    pub path: HashMap<String, String>,
    /// Counts the connection against its address's cap while it lives.
    pub ip_slot: Slot<std::net::IpAddr>,
}

/// Where the client resumes from, and what its transport can tell it.
#[derive(Debug, Default)]
pub struct Resume {
    /// The resume position the client came back with (SSE `Last-Event-ID`,
    /// a WebSocket route's `resume.query`).
    pub from: Option<String>,
    /// Without a position, send the route's latest events on join
    /// (`resume.replay_last`).
    pub latest_on_join: bool,
    /// The transport shows the client its position with every event (SSE
    /// `id:`, a WebSocket route's `frame.offset_field`).
    pub positions: bool,
    /// It can also tell the position before any event (SSE).
    pub announce: bool,
}

/// An admitted connection, joined to its topics, ready to serve.
#[derive(Debug)]
pub struct Session {
    conn: Connection,
    held: Held,
    topics: Vec<Topic>,
    cursor: Cursor,
    announce: bool,
    latest: Option<replay::Replay>,
}

/// What a connection holds and must give back when it ends.
#[derive(Debug)]
struct Held {
    sub: Arc<Subscriber>,
    /// Lease holder and presence member name: unique across replicas.
    holder: String,
    lease: Option<String>,
    present: bool,
    _slot: Option<Slot<String>>,
}

impl Connection {
    /// Admit the connection and join its topics, or say why not. On refusal
    /// everything taken so far is given back.
    pub async fn open(self, resume: Resume) -> Result<Session, CloseReason> {
        let metrics = &self.profile.metrics;
        metrics.opened.increment(1);
        metrics.connection_opened();
        let sub = Subscriber::new(self.app.config.limits.outbound_queue);
        let mut held = Held {
            holder: format!("{}-{}", self.app.replica_id, sub.id),
            sub,
            lease: None,
            present: false,
            _slot: None,
        };
        match self.acquire(&mut held, &resume).await {
            Ok((topics, latest, cursor)) => Ok(Session {
                conn: self,
                held,
                topics,
                cursor,
                announce: resume.announce,
                latest,
            }),
            Err(reason) => {
                self.release(&held).await;
                self.ended(reason);
                Err(reason)
            }
        }
    }

    async fn acquire(
        &self,
        held: &mut Held,
        resume: &Resume,
    ) -> Result<(Vec<Topic>, Option<replay::Replay>, Cursor), CloseReason> {
        held._slot = Some(admit(&self.app, &self.profile, &self.principal, &self.path).await?);
        // Reachable by orders from here on (release forgets it on refusal).
        self.app
            .hub
            .register_principal(&self.principal.sub, &held.sub);
        held.lease = self.take_lease(&held.holder).await?;
        held.present = self.join_presence(&held.holder).await;
        let topics = self
            .profile
            .join_topics(&self.principal, &self.path)
            .map_err(|e| {
                tracing::warn!(error = %e, "principal yields an invalid topic");
                CloseReason::Unauthorized("Identity cannot be served")
            })?;
        if resume.positions && topics.len() > position::MAX_TOPICS {
            // Checked per route at start-up; only `{role}` can get here.
            tracing::warn!(
                topics = topics.len(),
                "more topics than a resume position can name"
            );
            return Err(CloseReason::Unauthorized("Identity cannot be served"));
        }
        // Anything that is not a position counts as none.
        let given = resume.from.as_deref().and_then(Given::parse);
        // The latest events are read before subscribing and completed after
        // it, so events published in between are neither lost nor reordered.
        let latest = match (&self.profile.spec.resume, topics.first(), &given) {
            (Some(spec), Some(primary), None) if resume.latest_on_join && spec.replay_last > 0 => {
                Some(replay::latest(&self.app, primary, spec.replay_last).await)
            }
            _ => None,
        };
        for topic in &topics {
            if let Err(e) = self.app.hub.join(topic, &held.sub).await {
                tracing::warn!(error = %e, "cannot subscribe");
                return Err(CloseReason::Internal);
            }
        }
        let plain = self.profile.spec.holds_one_topic();
        let mut cursor = Cursor::new(resume.positions, plain, given);
        // A topic the client's position does not name starts where its
        // history stands now. A one-topic WebSocket route never needs it:
        // its position is the offset of the last event sent.
        if resume.positions && (!plain || resume.announce) {
            let starts = join_all(topics.iter().enumerate().map(|(i, topic)| {
                let given = cursor.given_of(topic, i == 0);
                async move {
                    match given {
                        Some(at) => at,
                        None => replay::join_point(&self.app, topic).await,
                    }
                }
            }))
            .await;
            if let Some(position) = cursor.position.as_mut() {
                for (topic, at) in topics.iter().zip(starts) {
                    position.hold(topic, at);
                }
            }
        }
        Ok((topics, latest, cursor))
    }

    async fn release(&self, held: &Held) {
        held.sub.end();
        if held.present {
            self.app.presence.leave(&held.holder).await;
        }
        self.app
            .hub
            .forget_principal(&self.principal.sub, &held.sub);
        self.app.hub.leave_all(&held.sub).await;
        if let Some(key) = &held.lease {
            self.app.leases.release(key, &held.holder).await;
        }
    }

    fn ended(&self, reason: CloseReason) {
        let metrics = &self.profile.metrics;
        metrics.connection_ended();
        metrics.closed(reason.label());
        tracing::debug!(route = %self.profile.spec.name, reason = reason.label(), "connection closed");
    }
}

impl Session {
    /// Serve until the connection ends, give back what it held, and close
    /// the transport with the reason. The future is the connection's whole
    /// task (spawned by the transport).
    pub fn serve<T: Transport>(self, transport: T) -> impl Future<Output = ()> {
        // Not an `async fn`: its arguments would be stored twice in the
        // future (once as arguments, once as the body's bindings), and this
        // future is what every idle connection costs. An `async move` block
        // uses what it captures in place.
        let mut session = self;
        let mut transport = transport;
        async move {
            let reason = session.run(&mut transport).await;
            // Boxed, as every step that is not the idle loop (see `run`).
            Box::pin(session.conn.release(&session.held)).await;
            Box::pin(transport.close(&session.conn.profile, reason)).await;
            session.conn.ended(reason);
        }
    }

    async fn run<T: Transport>(&mut self, transport: &mut T) -> CloseReason {
        let conn = &self.conn;
        let sub = Arc::clone(&self.held.sub);
        // Subscribed before the snapshot is read: an update made after the
        // snapshot was stored reaches the client as an event after it.
        // A connection's task is as large as its largest state, and idle
        // connections sit in the loop below: every other await of the session
        // (snapshot, replay, client commands, release, close) is boxed so its
        // state machine lives on the heap only while it runs.
        if conn.profile.spec.snapshot.is_some() {
            match Box::pin(conn.snapshot_frame()).await {
                Some(frame) => {
                    if let Err(r) = conn.write(transport, vec![Outbound::plain(frame)]).await {
                        return r;
                    }
                }
                None => return CloseReason::Internal,
            }
        }

        // A drain is signalled through the hub to every registered
        // connection; one that registered after it began sees it here.
        let mut drain_at: Option<Instant> = None;
        if sub.draining() || conn.app.shutdown.draining() {
            drain_at = Some(Instant::now() + conn.app.shutdown.close_delay());
        }
        // Without a way back from the client nobody could answer a ping.
        let mut heartbeat = match T::DUPLEX {
            true => conn
                .profile
                .spec
                .heartbeat
                .as_ref()
                .map(|spec| Heartbeat::new(spec, Instant::now())),
            false => None,
        };
        // A credential with an expiry (a JWT) ends the stream when it expires.
        let expires_at = conn
            .principal
            .exp
            .map(|exp| Instant::now() + seconds_until(exp));
        // One timer for every deadline of the session (the heartbeat's, the
        // credential's expiry, the drain's): each pinned timer is part of
        // every idle connection's task.
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let next_deadline = |heartbeat: Option<&Heartbeat>, drain_at: Option<Instant>| {
            [heartbeat.map(Heartbeat::deadline), expires_at, drain_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(far)
        };
        let timer = sleep_until(next_deadline(heartbeat.as_ref(), drain_at));
        tokio::pin!(timer);
        let mut channels = Channels::default();
        let limits = &conn.app.config.limits;
        let mut budget = MessageBudget::new(
            limits.client_messages_per_second,
            limits.client_message_burst,
        );
        let latest = self.latest.take();
        let cursor = &mut self.cursor;
        if let Err(r) =
            Box::pin(conn.replay_history(transport, &self.topics, latest, cursor, self.announce))
                .await
        {
            return r;
        }
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = &mut timer => {
                    let now = Instant::now();
                    if drain_at.is_some_and(|at| at <= now) {
                        return CloseReason::Shutdown;
                    }
                    if expires_at.is_some_and(|at| at <= now) {
                        return CloseReason::Unauthorized("Token expired");
                    }
                    if let Some(hb) = heartbeat.as_mut().filter(|hb| hb.deadline() <= now) {
                        match hb.fire(now) {
                            Tick::SendPing => {
                                let ping = vec![Outbound::plain(conn.profile.ping_frame())];
                                if let Err(r) = Box::pin(conn.write(transport, ping)).await {
                                    return r;
                                }
                            }
                            Tick::Missed => {}
                            Tick::Dead => return CloseReason::HeartbeatTimeout,
                        }
                    }
                }
                signal = sub.signalled(drain_at.is_none()) => match signal {
                    Signal::SlowConsumer => return CloseReason::SlowConsumer,
                    Signal::Drain => {
                        drain_at = Some(Instant::now() + conn.app.shutdown.close_delay());
                    }
                    Signal::Events => {
                        sub.take(BATCH, &mut batch);
                        // Boxed too: a write's state is the largest in the loop,
                        // and one allocation per batch costs far less than its
                        // socket write.
                        let write = conn.write_events(transport, &sub, &mut batch, &mut channels, cursor);
                        if let Err(r) = Box::pin(write).await {
                            return r;
                        }
                        // A burst's batch must not stay with every connection it reached.
                        batch.shrink_to(8);
                    }
                },
                msg = transport.recv() => match msg {
                    Inbound::Text(_) | Inbound::Binary if !budget.take(Instant::now()) => {
                        return CloseReason::Flood;
                    }
                    Inbound::Text(text) => {
                        conn.profile.metrics.received.increment(1);
                        let frame = conn.client_frame(transport, &sub, text.as_str(), heartbeat.as_mut(), &mut channels, cursor);
                        if let Err(r) = Box::pin(frame).await {
                            return r;
                        }
                    }
                    Inbound::Binary => conn.profile.metrics.received.increment(1),
                    Inbound::Control => {}
                    Inbound::Closed(reason) => return reason,
                },
            }
            // A pong, a drain or a fired deadline moves the next one.
            let next = next_deadline(heartbeat.as_ref(), drain_at);
            if timer.deadline() != next {
                timer.as_mut().reset(next);
            }
        }
    }
}

impl Connection {
    /// With a resume position: for every held topic it names, a gap frame
    /// if the topic's history no longer reaches back to it, then the events
    /// after it, merged across topics in publish order. Without one, the
    /// first topic's latest events (`resume.replay_last`). All before any
    /// live event; where nothing is replayed, the position alone if the
    /// transport can tell it.
    async fn replay_history<T: Transport>(
        &self,
        transport: &mut T,
        topics: &[Topic],
        latest: Option<replay::Replay>,
        cursor: &mut Cursor,
        announce: bool,
    ) -> Result<(), CloseReason> {
        let mut gaps: Vec<(Topic, String)> = Vec::new();
        let mut events: Vec<Arc<SharedEvent>> = Vec::new();
        match (cursor.has_given(), latest, topics.first()) {
            (true, _, _) => {
                let named: Vec<(&Topic, position::Offset)> = topics
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| cursor.take_given(t, i == 0).map(|at| (t, at)))
                    .collect();
                let reads = join_all(named.into_iter().map(|(topic, since)| async move {
                    (
                        topic,
                        since,
                        replay::after(&self.app, topic, since, true).await,
                    )
                }))
                .await;
                for (topic, since, r) in reads {
                    if r.gap {
                        gaps.push((topic.clone(), offset_text(since)));
                    }
                    if let Some(up_to) = r.up_to {
                        cursor.replayed_up_to(topic, up_to);
                    }
                    events.extend(r.events);
                }
            }
            (false, Some(latest), Some(primary)) => {
                let r = replay::then_after(latest, &self.app, primary).await;
                if let Some(up_to) = r.up_to {
                    cursor.replayed_up_to(primary, up_to);
                }
                events = r.events;
            }
            _ => {}
        }
        // A copy the hub would serve through an earlier topic of its
        // audience is that topic's to send (or was sent with it).
        events.retain(|e| !replay::served_elsewhere(e, |t| topics.contains(t)));
        // Each topic's events are in offset order already; a stable sort
        // by offset interleaves the topics in publish order.
        events.sort_by_key(|e| {
            e.envelope
                .offset
                .as_deref()
                .and_then(herald_shared::envelope::parse_offset)
        });
        tracing::debug!(events = events.len(), gaps = gaps.len(), "history replayed");
        let mut frames = self.replay_frames(&gaps, &events, cursor);
        if events.is_empty()
            && announce
            && let Some(position) = cursor.announcement(topics.first())
        {
            frames.push(Outbound {
                frame: Utf8Bytes::from_static(""),
                label: Label::Position(position),
            });
        }
        if frames.is_empty() {
            return Ok(());
        }
        self.write(transport, frames).await
    }

    /// An event for this client: the shared frame, or one showing the
    /// client's position across its topics.
    fn event_out(&self, event: &Arc<SharedEvent>, cursor: &mut Cursor) -> Outbound {
        match cursor.sent(event) {
            None => Outbound {
                frame: self.profile.event_frame(event),
                label: Label::Event(Arc::clone(event), None),
            },
            Some(position) => Outbound {
                frame: self.profile.event_frame_at(event, &position),
                label: Label::Event(Arc::clone(event), Some(position)),
            },
        }
    }

    /// A channel the client just joined: replay it from the position that
    /// names it (the subscribe frame's, else the connection's), or start
    /// its position where its history stands.
    async fn resume_channel<T: Transport>(
        &self,
        transport: &mut T,
        topic: &Topic,
        since: Option<position::Offset>,
        cursor: &mut Cursor,
    ) -> Result<(), CloseReason> {
        if cursor.position.is_none() {
            return Ok(());
        }
        let Some(since) = since else {
            let at = replay::join_point(&self.app, topic).await;
            if let Some(p) = cursor.position.as_mut() {
                p.hold(topic, at);
            }
            return Ok(());
        };
        if let Some(p) = cursor.position.as_mut() {
            p.hold(topic, since);
        }
        let r = replay::after(&self.app, topic, since, true).await;
        if let Some(up_to) = r.up_to {
            cursor.replayed_up_to(topic, up_to);
        }
        let gaps = match r.gap {
            true => vec![(topic.clone(), offset_text(since))],
            false => Vec::new(),
        };
        let held = |t: &Topic| cursor.position.as_ref().is_some_and(|p| p.holds(t));
        let events: Vec<Arc<SharedEvent>> = r
            .events
            .into_iter()
            .filter(|e| !replay::served_elsewhere(e, held))
            .collect();
        let frames = self.replay_frames(&gaps, &events, cursor);
        if frames.is_empty() {
            return Ok(());
        }
        self.write(transport, frames).await
    }

    /// A gap frame per topic whose history moved past the client, then the
    /// replayed events, each showing the client's position after it.
    fn replay_frames(
        &self,
        gaps: &[(Topic, String)],
        events: &[Arc<SharedEvent>],
        cursor: &mut Cursor,
    ) -> Vec<Outbound> {
        let mut frames = Vec::with_capacity(events.len() + gaps.len() + 1);
        for (topic, since) in gaps {
            frames.push(Outbound {
                frame: self.profile.gap_frame(topic, since),
                label: Label::Named(self.profile.gap_type().to_owned()),
            });
        }
        for e in events {
            frames.push(self.event_out(e, cursor));
        }
        frames
    }

    /// Write a batch taken from the outbox (emptied here) in one flush.
    async fn write_events<T: Transport>(
        &self,
        transport: &mut T,
        sub: &Arc<Subscriber>,
        batch: &mut Vec<Arc<SharedEvent>>,
        channels: &mut Channels,
        cursor: &mut Cursor,
    ) -> Result<(), CloseReason> {
        // The oldest event waited longest: past the bound, the client has
        // fallen behind for good (or the replica is overloaded), and closing
        // it as a slow consumer keeps every delivered event's delay bounded.
        // Its whole queue is dropped with it.
        let bound = self.app.config.limits.max_queue_delay_ms;
        if bound > 0
            && batch
                .first()
                .is_some_and(|e| e.arrived.elapsed() > Duration::from_millis(bound))
        {
            sub.take(usize::MAX, batch);
            let late = batch.drain(..).count() as u64;
            crate::metrics::dropped_events(crate::metrics::Dropped::QueueDelay, late);
            return Err(CloseReason::SlowConsumer);
        }
        let mut frames: Vec<Outbound> = Vec::with_capacity(batch.len());
        let now = now_ms();
        for event in batch.drain(..) {
            let env = &event.envelope;
            if env.is_control() {
                if env.event_type == CONTROL_DISCONNECT {
                    // What came before the order is still the client's.
                    if !frames.is_empty() {
                        self.write(transport, frames).await?;
                    }
                    return Err(CloseReason::Disconnected);
                }
                if env.event_type == CONTROL_UNSUBSCRIBE
                    && let Ok(data) = serde_json::from_str::<serde_json::Value>(env.data.get())
                    && let Some(topic) = data.get("topic").and_then(|t| t.as_str())
                    && self.drop_channel(sub, channels, topic).await
                {
                    cursor.release(channels.left());
                    frames.extend(
                        self.profile
                            .error_frame(Refusal::Forbidden("Unsubscribed by the server").error())
                            .map(Outbound::plain),
                    );
                }
                if env.event_type == CONTROL_RESYNC && self.profile.spec.snapshot.is_some() {
                    frames.extend(self.snapshot_frame().await.map(Outbound::plain));
                }
                if env.event_type == CONTROL_REVOKE
                    && let Ok(data) = serde_json::from_str::<serde_json::Value>(env.data.get())
                    && let Some(glob) = data.get("topic").and_then(|t| t.as_str())
                    && self.revoke(sub, channels, glob).await > 0
                {
                    cursor.release(channels.left());
                    frames.extend(
                        self.profile
                            .error_frame(Refusal::Forbidden("Subscription revoked").error())
                            .map(Outbound::plain),
                    );
                }
            } else if channels.filtered(&env.topic) || cursor.already_replayed(&event) {
                // Queued before the client left (or lost) the channel.
            } else {
                self.profile
                    .metrics
                    .lag
                    .record(((now - env.ts).max(0) as f64) / 1000.0);
                let resend = self.profile.resends_snapshot_after(&env.event_type);
                frames.push(self.event_out(&event, cursor));
                if resend {
                    frames.extend(self.snapshot_frame().await.map(Outbound::plain));
                }
            }
        }
        let n = frames.len() as u64;
        if n == 0 {
            return Ok(());
        }
        self.write(transport, frames).await?;
        self.profile.metrics.delivered.increment(n);
        Ok(())
    }

    /// Write frames within `limits.write_timeout_ms`.
    async fn write<T: Transport>(
        &self,
        transport: &mut T,
        frames: Vec<Outbound>,
    ) -> Result<(), CloseReason> {
        let deadline = Duration::from_millis(self.app.config.limits.write_timeout_ms);
        match timeout(deadline, transport.send(frames)).await {
            Ok(result) => result,
            Err(_) => Err(CloseReason::WriteTimeout),
        }
    }

    /// A client frame: a command of the profile, or ignored. Refused
    /// commands are answered with the profile's error frame, if it has one.
    async fn client_frame<T: Transport>(
        &self,
        transport: &mut T,
        sub: &Arc<Subscriber>,
        text: &str,
        heartbeat: Option<&mut Heartbeat>,
        channels: &mut Channels,
        cursor: &mut Cursor,
    ) -> Result<(), CloseReason> {
        let strict = self.profile.spec.on_unknown == UnknownFrame::Error;
        let Ok(serde_json::Value::Object(frame)) = serde_json::from_str::<serde_json::Value>(text)
        else {
            return match strict {
                true => {
                    self.refuse(transport, Refusal::BadRequest("Invalid JSON"))
                        .await
                }
                false => Ok(()),
            };
        };
        let Some(serde_json::Value::String(kind)) = frame.get(&self.profile.spec.frame.type_field)
        else {
            return match strict {
                true => {
                    self.refuse(transport, Refusal::BadRequest("Missing message type"))
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
            frame_field(&frame, field).and_then(|v| v.as_str())
        };
        let outcome = match self.profile.command(kind) {
            Some(Command::Pong) => {
                if let Some(hb) = heartbeat {
                    hb.pong();
                }
                Ok(())
            }
            // A position names at most MAX_TOPICS topics: past that a
            // resume would silently drop some, so the channel is refused.
            Some(Command::Subscribe)
                if cursor.position.is_some() && cursor.held() >= position::MAX_TOPICS =>
            {
                Err(Refusal::TooMany)
            }
            Some(Command::Subscribe) => match self.subscribe(sub, channels, channel()).await {
                Ok(joined) => {
                    // Confirmed before any replayed event of the channel.
                    if let Some(ack) =
                        channel().and_then(|c| self.profile.channel_ack_frame(true, c))
                    {
                        self.write(transport, vec![Outbound::plain(ack)]).await?;
                    }
                    let Some(topic) = joined else {
                        return Ok(());
                    };
                    // A position in the frame (a plain offset names this
                    // channel); without one, the connection's position may.
                    let field = self
                        .profile
                        .spec
                        .channels
                        .as_ref()
                        .and_then(|c| c.position_field.as_ref());
                    let since = match field.and_then(|f| frame_field(&frame, f)) {
                        Some(value) => value
                            .as_str()
                            .and_then(Given::parse)
                            .and_then(|g| g.of(&topic, true)),
                        None => cursor.take_given(&topic, false),
                    };
                    return self.resume_channel(transport, &topic, since, cursor).await;
                }
                Err(refusal) => Err(refusal),
            },
            Some(Command::Unsubscribe) => {
                let left = self.unsubscribe(sub, channels, channel()).await;
                cursor.release(channels.left());
                if left.is_ok()
                    && let Some(ack) =
                        channel().and_then(|c| self.profile.channel_ack_frame(false, c))
                {
                    self.write(transport, vec![Outbound::plain(ack)]).await?;
                }
                left
            }
            Some(Command::Heartbeat) => {
                if let Some(ack) = self.profile.heartbeat_ack_frame() {
                    self.write(transport, vec![Outbound::plain(ack)]).await?;
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
            Err(refusal) => self.refuse(transport, refusal).await,
        }
    }

    async fn refuse<T: Transport>(
        &self,
        transport: &mut T,
        refusal: Refusal,
    ) -> Result<(), CloseReason> {
        match self.profile.error_frame(refusal.error()) {
            Some(frame) => self.write(transport, vec![Outbound::plain(frame)]).await,
            None => Ok(()),
        }
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
        Some(self.profile.payload_frame(&spec.event_type, &payload))
    }
}

/// Time from now until a Unix timestamp in seconds (zero if past).
fn seconds_until(unix_secs: u64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(unix_secs).saturating_sub(now)
}
