//! History replay: the events of each held topic after a client's resume
//! position (SSE `Last-Event-ID`, a WebSocket profile's `resume.query`, a
//! subscribe frame's `channels.position_field`), or the first topic's latest
//! events on join (`resume.replay_last`). A position older than what a
//! topic's history still holds is reported as a gap for that topic, so the
//! client knows it missed events instead of silently skipping them.
//!
//! [`Cursor`] is a session's side of it: the position sent to the client,
//! the one it came back with, and how far replay reached per topic so live
//! copies of replayed events are skipped.

use std::sync::Arc;

use herald_shared::Envelope;
use herald_shared::Topic;
use herald_shared::envelope::parse_offset;

use super::position::{Given, Offset, Position, offset_text};
use crate::hub::SharedEvent;
use crate::state::AppState;

/// A session's resume state.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// What the client is told with every event; None on routes whose
    /// frames carry no position.
    pub position: Option<Position>,
    /// The route holds one topic: its position is the event's own offset,
    /// and event frames stay shared between sockets.
    pub plain: bool,
    /// The position the client connected with.
    given: Option<Given>,
    /// Channels that already resumed from `given`: a second subscribe in
    /// the same session starts from its join, not from the old position.
    given_used: Vec<Topic>,
    /// Per topic, the offset replay reached: live copies up to it are skipped.
    replayed: Vec<(Topic, Offset)>,
}

impl Cursor {
    pub(crate) fn new(position: bool, plain: bool, given: Option<Given>) -> Self {
        Self {
            position: position.then(Position::default),
            plain,
            given,
            given_used: Vec::new(),
            replayed: Vec::new(),
        }
    }

    /// Whether the client came with a position at all.
    pub(crate) fn has_given(&self) -> bool {
        self.given.is_some()
    }

    /// Where the client's position puts `topic`, without using it up.
    pub(crate) fn given_of(&self, topic: &Topic, first: bool) -> Option<Offset> {
        self.given.as_ref()?.of(topic, first)
    }

    /// Where the client's position puts `topic` (`first`: the route's first
    /// joined topic), once per topic and session.
    pub(crate) fn take_given(&mut self, topic: &Topic, first: bool) -> Option<Offset> {
        if self.given_used.contains(topic) {
            return None;
        }
        let at = self.given.as_ref()?.of(topic, first)?;
        self.given_used.push(topic.clone());
        Some(at)
    }

    /// How many topics the position names now.
    pub(crate) fn held(&self) -> usize {
        self.position.as_ref().map_or(0, Position::len)
    }

    /// Whether a live event is a copy of one already replayed.
    pub(crate) fn already_replayed(&self, event: &SharedEvent) -> bool {
        if self.replayed.is_empty() {
            return false;
        }
        let env = &event.envelope;
        let Some(at) = env.offset.as_deref().and_then(parse_offset) else {
            return false;
        };
        self.replayed
            .iter()
            .any(|(topic, up_to)| *topic == env.topic && at <= *up_to)
    }

    /// Remember how far a topic's replay reached.
    pub(crate) fn replayed_up_to(&mut self, topic: &Topic, up_to: Offset) {
        self.replayed.retain(|(t, _)| t != topic);
        self.replayed.push((topic.clone(), up_to));
    }

    /// The connection no longer holds these topics.
    pub(crate) fn release(&mut self, topics: &[Topic]) {
        if topics.is_empty() {
            return;
        }
        if let Some(p) = self.position.as_mut() {
            for t in topics {
                p.release(t);
            }
        }
        self.replayed.retain(|(t, _)| !topics.contains(t));
    }

    /// The client was sent `event`: the text of its position after it,
    /// when that is not the event's own offset.
    pub(crate) fn sent(&mut self, event: &SharedEvent) -> Option<String> {
        if self.plain {
            return None;
        }
        let position = self.position.as_mut()?;
        let env = &event.envelope;
        if let Some(at) = env.offset.as_deref().and_then(parse_offset) {
            position.advance(&env.topic, at);
        }
        Some(position.encode())
    }

    /// The whole position as the client would store it, to announce it
    /// before any event (SSE `id:`).
    pub(crate) fn announcement(&self, first: Option<&Topic>) -> Option<String> {
        let position = self.position.as_ref()?;
        match (self.plain, first) {
            (true, Some(topic)) => position.at(topic).map(offset_text),
            (true, None) => None,
            (false, _) => Some(position.encode()),
        }
    }
}

/// Events replayed at most on one connect.
pub const MAX_REPLAY: usize = 1000;

#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub events: Vec<Arc<SharedEvent>>,
    /// Offset of the last replayed event: live copies up to it are skipped.
    pub up_to: Option<Offset>,
    last_offset: Option<String>,
    /// The history no longer reaches back to the resume position.
    pub gap: bool,
}

impl Replay {
    fn push_entries(&mut self, app: &AppState, entries: Vec<(String, String)>) {
        for (offset, json) in entries {
            let Ok(mut env) = Envelope::decode(json.as_bytes()) else {
                continue;
            };
            self.up_to = parse_offset(&offset);
            self.last_offset = Some(offset.clone());
            env.offset = Some(offset);
            self.events.push(app.hub.shared(env));
        }
    }
}

fn or_log(
    entries: Result<Vec<(String, String)>, crate::store::StoreError>,
) -> Vec<(String, String)> {
    entries.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read history");
        Vec::new()
    })
}

/// The history of `topic` after `since`. With `detect_gap`, report when
/// the oldest entry still kept is newer than `since` (entries between them
/// may have been trimmed; reported conservatively). `0-0` means "from the
/// start of the history": never a gap.
pub(crate) async fn after(
    app: &AppState,
    topic: &Topic,
    since: Offset,
    detect_gap: bool,
) -> Replay {
    let mut out = Replay::default();
    out.push_entries(
        app,
        or_log(
            app.store
                .history_after(topic.as_str(), &offset_text(since), MAX_REPLAY)
                .await,
        ),
    );
    if detect_gap && since != (0, 0) {
        out.gap = match app.store.history_oldest(topic.as_str()).await {
            Ok(Some(oldest)) => parse_offset(&oldest) > Some(since),
            Ok(None) | Err(_) => true,
        };
    }
    out
}

/// Where `topic`'s history stands now: the offset of its last entry, or
/// `0-0` when it has none. Read after subscribing, so every event after it
/// reaches the connection live.
pub(crate) async fn join_point(app: &AppState, topic: &Topic) -> Offset {
    match app.store.history_last(topic.as_str(), 1).await {
        Ok(entries) => entries
            .last()
            .and_then(|(offset, _)| parse_offset(offset))
            .unwrap_or((0, 0)),
        Err(e) => {
            // From the start of what is kept: a resume may repeat what came
            // before the join, never lose what came after it.
            tracing::warn!(error = %e, "cannot read history; position starts at its beginning");
            (0, 0)
        }
    }
}

/// The latest `n` events of `topic`, read *before* subscribing; complete it
/// with [`then_after`] once subscribed so nothing published in between is lost.
pub(crate) async fn latest(app: &AppState, topic: &Topic, n: usize) -> Replay {
    let mut out = Replay::default();
    out.push_entries(
        app,
        or_log(
            app.store
                .history_last(topic.as_str(), n.min(MAX_REPLAY))
                .await,
        ),
    );
    out
}

/// Extend a [`latest`] read with what the history got since it.
pub(crate) async fn then_after(mut first: Replay, app: &AppState, topic: &Topic) -> Replay {
    let from = first
        .last_offset
        .as_deref()
        .and_then(parse_offset)
        .unwrap_or((0, 0));
    let more = after(app, topic, from, false).await;
    first.events.extend(more.events);
    if more.up_to.is_some() {
        first.up_to = more.up_to;
        first.last_offset = more.last_offset;
    }
    first
}

/// Whether a copy of an event on its topic is one this connection is never
/// served: the hub serves an event through the first topic of its audience
/// the connection holds, so copies on later topics are skipped on replay
/// too (else a resume would repeat them).
pub(crate) fn served_elsewhere(event: &SharedEvent, held: impl Fn(&Topic) -> bool) -> bool {
    let env = &event.envelope;
    let audience = env.audience();
    let Some(at) = audience.iter().position(|t| *t == env.topic) else {
        return false;
    };
    audience[..at].iter().any(held)
}
