//! Shutdown, explicit and observable.
//!
//! axum's graceful shutdown does not see upgraded WebSockets (they live in
//! detached tasks) and never finishes while an SSE response is open, so
//! sockets are tracked here: a token to signal, a tracker to wait on, and a
//! phase that `/readyz` and logs observe. Sequence on SIGTERM/SIGINT:
//! `Running` → `Draining` (not ready at once; after `shutdown.unready_ms`
//! stop accepting, then every socket closes
//! with its profile's shutdown code at a random moment within the drain
//! window) → `Stopped` (all sockets gone, or the window plus a grace expired).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Running = 0,
    Draining = 1,
    Stopped = 2,
}

#[derive(Debug)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
    phase: AtomicU8,
    drain: Duration,
}

impl Shutdown {
    pub fn new(drain: Duration) -> Self {
        Self {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            phase: AtomicU8::new(0),
            drain,
        }
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether the drain has begun.
    pub fn draining(&self) -> bool {
        self.token.is_cancelled()
    }

    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }

    /// When this socket should close after the signal: uniformly spread over
    /// the drain window so clients do not reconnect to other replicas at once.
    pub fn close_delay(&self) -> Duration {
        let ms = self.drain.as_millis() as u64;
        if ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::rng().random_range(0..ms))
        }
    }

    /// Report not-ready (`/readyz` 503) while still serving.
    pub fn unready(&self) {
        self.phase.store(Phase::Draining as u8, Ordering::Release);
        crate::metrics::draining();
    }

    /// Begin draining: not ready, sockets told to close.
    pub fn begin(&self) {
        self.phase.store(Phase::Draining as u8, Ordering::Release);
        crate::metrics::draining();
        tracing::info!(
            drain_ms = self.drain.as_millis() as u64,
            "draining connections"
        );
        self.token.cancel();
    }

    /// Wait for every socket task, at most the drain window plus a grace.
    pub async fn wait(&self) {
        self.tracker.close();
        let limit = self.drain + Duration::from_secs(3);
        if tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.tracker.len(),
                "drain window expired with sockets open"
            );
        }
        self.phase.store(Phase::Stopped as u8, Ordering::Release);
    }
}

/// Install the SIGTERM and Ctrl-C handlers now (so a signal that arrives
/// before the server first polls for it is not fatal) and return a future
/// that resolves on either.
pub fn signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
