//! Which Redis failures are worth another attempt, and the bounded retry
//! loop every publishing path uses (feature `redis`): the publisher
//! library, `heraldctl` and the gateway's HTTP publish path.
//!
//! A publish retried after a lost reply may already have reached Redis. The
//! loop therefore tells each attempt whether it is the first: the history
//! script then looks the event id up before storing it again, and gateways
//! drop a repeated id, so a retry is neither stored nor delivered twice.

use std::future::Future;
use std::time::Duration;

use fred::error::{Error, ErrorKind};
use fred::prelude::Client;

use crate::history::Attempt;
use crate::redis_link::RedisLink;

/// How long a publish keeps trying through an outage or failover unless
/// its caller says otherwise.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(10);
/// First pause between attempts; it doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between attempts.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Whether Redis may take the command if asked again: the connection failed
/// or timed out, or the server is between roles (failover, loading,
/// migrating).
pub fn is_transient(e: &Error) -> bool {
    // Server replies between roles; fred's own "Failed to route command"
    // while it looks for the new primary behind Sentinel, and "Too many
    // failed write attempts" when the connection dropped under a command.
    const STATES: [&str; 8] = [
        "Failed to route command",
        "Too many failed write attempts",
        "LOADING",
        "READONLY",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "TRYAGAIN",
        "NOREPLICAS",
    ];
    match e.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Cluster
        | ErrorKind::Routing
        | ErrorKind::Backpressure
        | ErrorKind::Sentinel => true,
        _ => STATES.iter().any(|s| e.details().contains(s)),
    }
}

/// Run `op` on `link`'s client until it succeeds, fails for good, or
/// `window` is spent, pausing 50 ms, then twice as long each time up to a
/// second. `op` learns whether its attempt is the first. Each outcome is
/// reported to the link, which replaces a client that keeps failing (see
/// [`crate::redis_link`]). A zero window is one attempt.
pub async fn retry_within<T, F, Fut>(
    window: Duration,
    link: &RedisLink,
    mut op: F,
) -> Result<T, Error>
where
    F: FnMut(Attempt, Client) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let deadline = tokio::time::Instant::now() + window;
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempt = Attempt::First;
    loop {
        let generation = link.generation();
        let result = op(attempt, link.client()).await;
        match &result {
            Ok(_) => link.succeeded(),
            Err(e) if is_transient(e) => link.failed(generation),
            Err(_) => {}
        }
        match result {
            Ok(value) => return Ok(value),
            Err(e) if is_transient(&e) && tokio::time::Instant::now() < deadline => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
                attempt = Attempt::Retry;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_role_changes_are_transient_other_errors_are_not() {
        assert!(is_transient(&Error::new(ErrorKind::IO, "reset")));
        assert!(is_transient(&Error::new(ErrorKind::Timeout, "late")));
        assert!(is_transient(&Error::new(
            ErrorKind::Unknown,
            "Too many failed write attempts."
        )));
        assert!(is_transient(&Error::new(
            ErrorKind::Unknown,
            "TRYAGAIN Multiple keys request during rehashing of slot"
        )));
        assert!(!is_transient(&Error::new(ErrorKind::Auth, "WRONGPASS")));
        assert!(!is_transient(&Error::new(
            ErrorKind::Unknown,
            "ERR Error running script"
        )));
    }
}
