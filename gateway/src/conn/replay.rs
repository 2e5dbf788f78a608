//! History replay on connect: the events of a topic after a client's resume
//! position (SSE `Last-Event-ID`, a WebSocket profile's `resume.query`), or
//! its latest events on join (`resume.replay_last`). A position older than
//! what the history still holds is reported as a gap, so the client knows
//! it missed events instead of silently skipping them.

use std::sync::Arc;

use herald_shared::Envelope;
use herald_shared::Topic;
use herald_shared::envelope::parse_offset;

use crate::hub::SharedEvent;
use crate::state::AppState;

/// Events replayed at most on one connect.
pub const MAX_REPLAY: usize = 1000;

#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub events: Vec<Arc<SharedEvent>>,
    /// Offset of the last replayed event: live copies up to it are skipped.
    pub up_to: Option<(u64, u64)>,
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
/// may have been trimmed; reported conservatively).
pub(crate) async fn after(app: &AppState, topic: &Topic, since: &str, detect_gap: bool) -> Replay {
    let mut out = Replay::default();
    if parse_offset(since).is_none() {
        return out;
    }
    out.push_entries(
        app,
        or_log(
            app.store
                .history_after(topic.as_str(), since, MAX_REPLAY)
                .await,
        ),
    );
    if detect_gap {
        out.gap = match app.store.history_oldest(topic.as_str()).await {
            Ok(Some(oldest)) => parse_offset(&oldest) > parse_offset(since),
            Ok(None) | Err(_) => true,
        };
    }
    out
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
        .clone()
        .unwrap_or_else(|| "0-0".to_owned());
    let more = after(app, topic, &from, false).await;
    first.events.extend(more.events);
    if more.up_to.is_some() {
        first.up_to = more.up_to;
        first.last_offset = more.last_offset;
    }
    first
}

/// Whether a live event is a copy of one already replayed.
pub(crate) fn already_replayed(
    replayed: &Option<(Topic, (u64, u64))>,
    event: &SharedEvent,
) -> bool {
    let Some((topic, up_to)) = replayed else {
        return false;
    };
    let env = &event.envelope;
    env.topic == *topic
        && env
            .offset
            .as_deref()
            .and_then(parse_offset)
            .is_some_and(|o| o <= *up_to)
}
