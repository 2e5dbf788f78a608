//! One connection as the hub sees it: its bounded outbox of events, the
//! topics it joined, and the signals that end or drain it.
//!
//! The outbox is the only path from the hub to a session, so it is built
//! for the fan-out: the hub's push is a short uncontended lock and wakes
//! the session only when the outbox goes from empty to not empty (a session
//! with a backlog is already awake); the session takes a whole batch under
//! one lock. The slow-consumer and drain signals share the outbox's waker,
//! so a waiting session registers one waker for everything the hub can
//! tell it, instead of a waiter in a shared list per signal per pass.
//! Nothing is allocated until the first event.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use herald_shared::Topic;
use parking_lot::{Mutex, MutexGuard};

use super::SharedEvent;

/// The hub found the outbox full: the connection is a slow consumer.
const SLOW: u8 = 1;
/// The replica is draining: the connection should close within the window.
const DRAIN: u8 = 2;
/// The session ended: nothing is queued any more.
const GONE: u8 = 4;

/// An outbox above this capacity, once emptied, gives the memory back: a
/// burst must not stay in every connection it reached.
const KEPT_CAPACITY: usize = 64;

/// What the hub told a waiting session, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    SlowConsumer,
    Drain,
    /// The outbox holds events.
    Events,
}

/// What became of an event offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The outbox was full: dropped, and the connection marked slow.
    Full,
    /// The session had ended.
    Gone,
}

#[derive(Debug)]
pub struct Subscriber {
    pub id: u64,
    /// Topics joined, to serve an event reaching it through several topics once.
    topics: Mutex<Vec<Topic>>,
    outbox: Mutex<VecDeque<Arc<SharedEvent>>>,
    capacity: usize,
    signals: AtomicU8,
    waker: AtomicWaker,
}

impl Subscriber {
    /// A subscriber whose outbox holds at most `capacity` events.
    pub fn new(capacity: usize) -> Arc<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            topics: Mutex::new(Vec::new()),
            outbox: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            signals: AtomicU8::new(0),
            waker: AtomicWaker::new(),
        })
    }

    /// Queue an event without waiting (the hub's side).
    pub fn offer(&self, event: Arc<SharedEvent>) -> Offer {
        let signals = self.signals.load(Ordering::Acquire);
        if signals & GONE != 0 {
            return Offer::Gone;
        }
        let was_empty = {
            let mut outbox = self.outbox.lock();
            if outbox.len() >= self.capacity {
                drop(outbox);
                self.raise(SLOW);
                return Offer::Full;
            }
            outbox.push_back(event);
            outbox.len() == 1
        };
        if was_empty {
            self.waker.wake();
        }
        Offer::Queued
    }

    /// Tell the session to close within the drain window.
    pub fn drain(&self) {
        self.raise(DRAIN);
    }

    /// The session ended: later offers are counted as to a closed connection.
    pub fn end(&self) {
        self.signals.fetch_or(GONE, Ordering::AcqRel);
        self.outbox.lock().clear();
    }

    fn raise(&self, signal: u8) {
        if self.signals.fetch_or(signal, Ordering::AcqRel) & signal == 0 {
            self.waker.wake();
        }
    }

    /// Resolves with the most urgent signal: a slow consumer, then the
    /// drain (only while `drain` is asked for: a session that is draining
    /// already waits for the rest), then queued events. One future for all
    /// of them registers the session's waker once per pass: at one event
    /// per wake, each registration is a share of every delivery.
    pub fn signalled(&self, drain: bool) -> impl Future<Output = Signal> + '_ {
        poll_fn(move |cx| {
            self.waker.register(cx.waker());
            let signals = self.signals.load(Ordering::Acquire);
            if signals & SLOW != 0 {
                Poll::Ready(Signal::SlowConsumer)
            } else if drain && signals & DRAIN != 0 {
                Poll::Ready(Signal::Drain)
            } else if !self.outbox.lock().is_empty() {
                Poll::Ready(Signal::Events)
            } else {
                Poll::Pending
            }
        })
    }

    /// Whether a drain was signalled (for a session that starts after it).
    pub fn draining(&self) -> bool {
        self.signals.load(Ordering::Acquire) & DRAIN != 0
    }

    /// Resolves when the outbox holds an event (for listeners that take no
    /// signals).
    pub fn queued(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            self.waker.register(cx.waker());
            match self.outbox.lock().is_empty() {
                true => Poll::Pending,
                false => Poll::Ready(()),
            }
        })
    }

    /// Move up to `max` queued events, oldest first, into `into`.
    pub fn take(&self, max: usize, into: &mut Vec<Arc<SharedEvent>>) {
        let mut outbox = self.outbox.lock();
        let n = outbox.len().min(max);
        into.extend(outbox.drain(..n));
        if outbox.is_empty() && outbox.capacity() > KEPT_CAPACITY {
            *outbox = VecDeque::new();
        }
    }

    /// The next event, waiting for one (for listeners that are not sessions).
    pub async fn next(&self) -> Arc<SharedEvent> {
        loop {
            if let Some(event) = self.outbox.lock().pop_front() {
                return event;
            }
            self.queued().await;
        }
    }

    /// The next event if one is queued.
    pub fn try_next(&self) -> Option<Arc<SharedEvent>> {
        self.outbox.lock().pop_front()
    }

    pub fn topics(&self) -> Vec<Topic> {
        self.lock_topics().clone()
    }

    pub(super) fn joined_any(&self, topics: &[Topic]) -> bool {
        let mine = self.lock_topics();
        topics.iter().any(|t| mine.contains(t))
    }

    pub(super) fn lock_topics(&self) -> MutexGuard<'_, Vec<Topic>> {
        self.topics.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::Envelope;
    use serde_json::value::RawValue;

    fn event(id: &str) -> Arc<SharedEvent> {
        let data = RawValue::from_string("{}".to_owned()).expect("raw");
        let topic = Topic::parse("user:a").expect("topic");
        Arc::new(SharedEvent::new(
            Envelope::single(id.to_owned(), "t", 0, topic, data),
            1,
        ))
    }

    #[tokio::test]
    async fn a_waiting_session_wakes_for_an_event_and_takes_the_batch() {
        let sub = Subscriber::new(8);
        let waiting = tokio::spawn({
            let sub = Arc::clone(&sub);
            async move { sub.queued().await }
        });
        tokio::task::yield_now().await;
        assert_eq!(sub.offer(event("1")), Offer::Queued);
        assert_eq!(sub.offer(event("2")), Offer::Queued);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("woken")
            .expect("task");
        let mut batch = Vec::new();
        sub.take(8, &mut batch);
        let ids: Vec<&str> = batch.iter().map(|e| e.envelope.id.as_str()).collect();
        assert_eq!(ids, ["1", "2"]);
        assert!(sub.try_next().is_none());
    }

    #[tokio::test]
    async fn a_full_outbox_signals_a_slow_consumer_and_drops_the_event() {
        let sub = Subscriber::new(1);
        assert_eq!(sub.offer(event("1")), Offer::Queued);
        assert_eq!(sub.offer(event("2")), Offer::Full);
        let signal = tokio::time::timeout(std::time::Duration::from_secs(1), sub.signalled(true))
            .await
            .expect("signalled");
        assert_eq!(signal, Signal::SlowConsumer);
        assert_eq!(
            sub.try_next().map(|e| e.envelope.id.clone()).as_deref(),
            Some("1")
        );
        assert!(sub.try_next().is_none(), "the second event was dropped");
    }

    #[tokio::test]
    async fn drain_is_signalled_only_while_asked_for() {
        let sub = Subscriber::new(4);
        sub.drain();
        assert!(sub.draining());
        let asked = tokio::time::timeout(std::time::Duration::from_secs(1), sub.signalled(true))
            .await
            .expect("signalled");
        assert_eq!(asked, Signal::Drain);
        use futures_util::FutureExt;
        assert!(
            sub.signalled(false).now_or_never().is_none(),
            "a draining session is not told again"
        );
    }

    #[tokio::test]
    async fn queued_events_are_signalled_after_the_urgent_signals() {
        use futures_util::FutureExt;
        let sub = Subscriber::new(4);
        assert!(sub.signalled(true).now_or_never().is_none(), "nothing yet");
        assert_eq!(sub.offer(event("1")), Offer::Queued);
        assert_eq!(sub.signalled(true).now_or_never(), Some(Signal::Events));
        sub.drain();
        assert_eq!(sub.signalled(true).now_or_never(), Some(Signal::Drain));
        assert_eq!(
            sub.signalled(false).now_or_never(),
            Some(Signal::Events),
            "a draining session still takes its events"
        );
    }

    #[test]
    fn an_ended_session_takes_nothing_more() {
        let sub = Subscriber::new(4);
        assert_eq!(sub.offer(event("1")), Offer::Queued);
        sub.end();
        assert!(sub.try_next().is_none(), "the outbox is emptied");
        assert_eq!(sub.offer(event("2")), Offer::Gone);
    }
}
