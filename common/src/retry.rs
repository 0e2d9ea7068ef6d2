//! How Herald retries: one backoff policy (exponential, jittered, capped,
//! from `backon`) in the two shapes the services need.
//!
//! * [`until_answered`]: for what a service cannot do without (its topics, its
//!   consumer group, the store for a batch it already holds, the registry's
//!   routes): retried for as long as it takes, never given up.
//! * [`Policy::bounded`] with [`Policy::retry`]: for what may fail for good
//!   after a few tries because someone else has a copy (a live delivery that
//!   replay will make, a transaction the caller answers 503 for).
//!
//! Jitter keeps many nodes that lost the same server from retrying in step;
//! the cap keeps a long outage from growing the wait past what an operator
//! would tolerate once the server is back. Every failure is logged once,
//! with its cause and the wait before the next attempt.

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// A backoff: the first wait, the cap, and how many retries (none: forever).
/// Each wait doubles the previous one up to the cap, plus a random jitter of
/// up to the wait itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Retries after the first attempt; `None` retries forever.
    pub retries: Option<usize>,
}

impl Policy {
    /// Retries forever, from 100 ms up to 5 s between attempts: a server that
    /// comes back is used within seconds, one that stays down costs a few
    /// requests a second at most.
    pub const UNTIL_ANSWERED: Policy = Policy {
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
        retries: None,
    };

    /// At most `attempts` attempts in all (at least one), from 100 ms up to
    /// 2 s between them.
    pub const fn bounded(attempts: usize) -> Policy {
        Policy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            retries: Some(attempts.saturating_sub(1)),
        }
    }

    /// The same policy with another first wait (the cap follows if lower).
    pub const fn starting_at(mut self, first_delay: Duration) -> Policy {
        self.first_delay = first_delay;
        if self.max_delay.as_nanos() < first_delay.as_nanos() {
            self.max_delay = first_delay;
        }
        self
    }

    /// The same policy with another cap.
    pub const fn capped_at(mut self, max_delay: Duration) -> Policy {
        self.max_delay = max_delay;
        self
    }

    fn builder(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter();
        match self.retries {
            Some(n) => builder.with_max_times(n),
            None => builder.without_max_times(),
        }
    }

    /// The waits between attempts, for a caller whose attempts carry state
    /// from one to the next (retrying only what failed): `None` once the
    /// retries are used up.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        self.builder().build()
    }

    /// Runs `attempt` until it succeeds or the retries are used up, logging
    /// each failure (with its cause) once; returns the last error then.
    /// `what` names the operation in the logs.
    pub async fn retry<T, E, F, Fut>(&self, what: &str, attempt: F) -> Result<T, E>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let result = attempt
            .retry(self.builder())
            .sleep(tokio::time::sleep)
            .notify(|e: &E, wait: Duration| {
                tracing::warn!(error = %e, retry_in = ?wait, "{what} failed; retrying");
            })
            .await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "{what} failed; giving up");
        }
        result
    }
}

/// Runs `attempt` until it succeeds, with [`Policy::UNTIL_ANSWERED`]'s
/// backoff, logging each failure once.
pub async fn until_answered<T, E, F, Fut>(what: &str, mut attempt: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        // The policy has no retry limit, so this returns `Err` only if the
        // backoff ever stopped by itself; start over rather than give up.
        if let Ok(answer) = Policy::UNTIL_ANSWERED.retry(what, &mut attempt).await {
            return answer;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::time::Instant;

    /// An operation that fails `failures` times, then answers how many
    /// attempts it took.
    fn flaky(
        failures: usize,
    ) -> (
        impl FnMut() -> std::future::Ready<Result<usize, String>>,
        std::sync::Arc<AtomicUsize>,
    ) {
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let op = move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            std::future::ready(if n > failures {
                Ok(n)
            } else {
                Err(format!("failure {n}"))
            })
        };
        (op, calls)
    }

    #[tokio::test(start_paused = true)]
    async fn until_answered_keeps_trying_with_growing_capped_waits() {
        let (op, calls) = flaky(12);
        let started = Instant::now();
        assert_eq!(until_answered("test", op).await, 13);
        assert_eq!(calls.load(Ordering::SeqCst), 13);
        // Twelve waits: 0.1, 0.2, 0.4, ... doubling to the 5 s cap, each plus
        // a jitter of up to itself.
        let floor: Duration = [100u64, 200, 400, 800, 1600, 3200]
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .sum::<Duration>()
            + Duration::from_secs(5) * 6;
        let waited = started.elapsed();
        assert!(waited >= floor, "waited {waited:?}, less than {floor:?}");
        assert!(waited < floor * 2, "waited {waited:?}, jitter beyond 2x");
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_gives_up_after_its_attempts_with_the_last_error() {
        let (op, calls) = flaky(usize::MAX);
        let result = Policy::bounded(4).retry("test", op).await;
        assert_eq!(result, Err("failure 4".to_string()));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_success_does_not_wait() {
        let (op, calls) = flaky(0);
        let started = Instant::now();
        assert_eq!(Policy::bounded(3).retry("test", op).await, Ok(1));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn delays_run_out_with_the_retries_and_respect_the_cap() {
        let policy = Policy::bounded(5)
            .starting_at(Duration::from_millis(10))
            .capped_at(Duration::from_millis(30));
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 4);
        let floors = [10u64, 20, 30, 30];
        for (delay, floor) in delays.iter().zip(floors) {
            let floor = Duration::from_millis(floor);
            assert!(*delay >= floor && *delay < floor * 2, "{delays:?}");
        }
    }
}
