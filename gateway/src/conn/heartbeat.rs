//! The application-level heartbeat as a small state machine over instants,
//! so the connection needs one timer and tests need no clock.

use std::time::Duration;

use herald_shared::profile::HeartbeatSpec;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    max_missed: u32,
    missed: u32,
    /// When the outstanding ping was sent, if one is unanswered.
    awaiting_since: Option<Instant>,
    deadline: Instant,
}

/// What the timer firing means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tick {
    SendPing,
    Missed,
    Dead,
}

impl Heartbeat {
    pub(crate) fn new(spec: &HeartbeatSpec, now: Instant) -> Self {
        let interval = Duration::from_millis(spec.interval_ms);
        Self {
            interval,
            timeout: Duration::from_millis(spec.timeout_ms),
            max_missed: spec.max_missed,
            missed: 0,
            awaiting_since: None,
            deadline: now + interval,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The timer reached `deadline()`.
    pub(crate) fn fire(&mut self, now: Instant) -> Tick {
        match self.awaiting_since.take() {
            Some(sent) => {
                self.missed += 1;
                if self.missed >= self.max_missed {
                    return Tick::Dead;
                }
                self.deadline = sent + self.interval;
                Tick::Missed
            }
            None => {
                self.awaiting_since = Some(now);
                self.deadline = now + self.timeout;
                Tick::SendPing
            }
        }
    }

    /// The client answered.
    pub(crate) fn pong(&mut self) {
        self.missed = 0;
        if let Some(sent) = self.awaiting_since.take() {
            self.deadline = sent + self.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HeartbeatSpec {
        HeartbeatSpec {
            interval_ms: 30_000,
            timeout_ms: 10_000,
            max_missed: 2,
            ping_type: "ping".into(),
            timestamp_field: None,
            close_code: 1001,
            close_reason: "x".into(),
        }
    }

    #[test]
    fn two_missed_pongs_kill() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(&spec(), t0);
        assert_eq!(hb.deadline(), t0 + Duration::from_secs(30));
        assert_eq!(hb.fire(hb.deadline()), Tick::SendPing);
        assert_eq!(hb.deadline(), t0 + Duration::from_secs(40));
        assert_eq!(hb.fire(hb.deadline()), Tick::Missed);
        assert_eq!(hb.deadline(), t0 + Duration::from_secs(60));
        assert_eq!(hb.fire(hb.deadline()), Tick::SendPing);
        assert_eq!(hb.fire(hb.deadline()), Tick::Dead);
    }

    #[test]
    fn pong_resets_the_count() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(&spec(), t0);
        hb.fire(hb.deadline());
        hb.fire(hb.deadline()); // missed one
        hb.fire(hb.deadline()); // ping at 60
        hb.pong();
        assert_eq!(hb.deadline(), t0 + Duration::from_secs(90));
        assert_eq!(hb.fire(hb.deadline()), Tick::SendPing);
        assert_eq!(
            hb.fire(hb.deadline()),
            Tick::Missed,
            "the count restarted after the pong"
        );
    }
}
