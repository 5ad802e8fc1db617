//! The one retry policy: exponential backoff with a cap and a total budget, used by the
//! consumer runner's naks and by every in-process retry loop.
//!
//! - [`RetryPolicy`]: the limits (first delay, cap, budget) and the consumer runner's nak decision.
//! - [`Backoff`]: the state of one retry loop over a policy (plus an optional attempt limit):
//!   `next_delay()` after each failure, `None` once the limits are spent, so no loop ever sleeps
//!   after its last attempt; `wait()` sleeps that delay unless shutdown comes first.
//! - [`retry`]: runs an async operation under a [`Backoff`] until it succeeds, the limits are
//!   spent, or shutdown.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// First nak backoff of a transiently failing message; doubles per delivery.
pub const RETRY_BACKOFF_MS_MIN: u64 = 100;
/// Cap of the nak backoff of a transiently failing message.
pub const RETRY_BACKOFF_MS_MAX: u64 = 30_000;
/// Backoff a transiently failing message may accumulate before it goes to the DLQ (10 min):
/// long enough to ride out a restart or a short outage of whatever the handler depends on.
pub const RETRY_BUDGET_MS: u64 = 10 * 60 * 1_000;
/// How a message that fails transiently is retried before it is dead-lettered.
///
/// Delivery `n` that fails is naked for `min(backoff_ms_min << (n - 1), backoff_ms_max)`; once
/// the backoff already spent reaches `budget_ms` the message goes to the DLQ instead. The budget
/// counts backoff only: the time each attempt itself takes comes on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First backoff.
    pub backoff_ms_min: u64,
    /// Backoff cap.
    pub backoff_ms_max: u64,
    /// Total backoff before the DLQ.
    pub budget_ms: u64,
}

/// What to do with a message whose handler failed transiently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Nak it; it comes back after this delay.
    RetryAfter(Duration),
    /// The budget is spent: dead-letter it.
    DeadLetter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::PRODUCTION
    }
}

impl RetryPolicy {
    /// Minutes of retries before the DLQ (the default of every consumer).
    pub const PRODUCTION: RetryPolicy = RetryPolicy {
        backoff_ms_min: RETRY_BACKOFF_MS_MIN,
        backoff_ms_max: RETRY_BACKOFF_MS_MAX,
        budget_ms: RETRY_BUDGET_MS,
    };

    /// The nak delay after failed delivery `delivered` (1-based).
    pub fn backoff_ms(&self, delivered: u64) -> u64 {
        let shift = delivered.saturating_sub(1).min(32);
        self.backoff_ms_min
            .max(1)
            .saturating_mul(1u64 << shift)
            .min(self.backoff_ms_max.max(self.backoff_ms_min))
    }

    /// Backoff spent before delivery `delivered` (1-based): the sum of the earlier delays.
    pub fn waited_ms(&self, delivered: u64) -> u64 {
        let mut waited = 0u64;
        let mut n = 1u64;
        while n < delivered {
            let backoff = self.backoff_ms(n);
            if backoff >= self.backoff_ms_max {
                // Every later delay is the cap: finish in one step.
                return waited.saturating_add(backoff.saturating_mul(delivered - n));
            }
            waited = waited.saturating_add(backoff);
            n += 1;
        }
        waited
    }

    /// Whether failed delivery `delivered` is retried, and after how long.
    pub fn after_failure(&self, delivered: u64) -> RetryDecision {
        if self.waited_ms(delivered.max(1)) >= self.budget_ms {
            RetryDecision::DeadLetter
        } else {
            RetryDecision::RetryAfter(Duration::from_millis(self.backoff_ms(delivered.max(1))))
        }
    }

    /// A policy without a budget, for loops that must never give up (a relay, a subscription):
    /// `backoff_ms_min`, doubling, capped at `backoff_ms_max`, forever.
    pub const fn forever(backoff_ms_min: u64, backoff_ms_max: u64) -> RetryPolicy {
        RetryPolicy {
            backoff_ms_min,
            backoff_ms_max,
            budget_ms: u64::MAX,
        }
    }

    /// The delivery at which a message that always fails is dead-lettered.
    pub fn max_deliveries(&self) -> u64 {
        let mut delivered = 1;
        while self.after_failure(delivered) != RetryDecision::DeadLetter {
            delivered += 1;
        }
        delivered
    }
}

/// The state of one retry loop: how many attempts failed under a [`RetryPolicy`] and an
/// optional attempt limit.
///
/// ```
/// use bus::retry::{Backoff, RetryPolicy};
/// use std::time::Duration;
///
/// let mut backoff = Backoff::new(RetryPolicy::forever(50, 200)).with_max_attempts(4);
/// let delays: Vec<_> = std::iter::from_fn(|| backoff.next_delay()).collect();
/// assert_eq!(delays, [50, 100, 200].map(Duration::from_millis));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    policy: RetryPolicy,
    attempts_max: Option<u32>,
    failures: u64,
}

/// How a [`Backoff::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The delay passed: try again.
    Retry,
    /// The limits are spent: the failed attempt was the last one (no delay was slept).
    Exhausted,
    /// Shutdown came first.
    Cancelled,
}

impl Backoff {
    /// A fresh loop under `policy` (limited by its budget only).
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            attempts_max: None,
            failures: 0,
        }
    }

    /// Also stops after `attempts` attempts in all (at least one).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.attempts_max = Some(attempts.max(1));
        self
    }

    /// Attempts that failed since the start or the last [`Backoff::reset`].
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// After a success: the next failure starts again from the first delay.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failed attempt; the delay before the next one, or `None` when that was the
    /// last attempt the limits allow.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if self
            .attempts_max
            .is_some_and(|max| self.failures >= u64::from(max))
        {
            return None;
        }
        match self.policy.after_failure(self.failures) {
            RetryDecision::RetryAfter(delay) => Some(delay),
            RetryDecision::DeadLetter => None,
        }
    }

    /// Records a failed attempt and sleeps the delay before the next, unless the limits are
    /// spent (no sleep) or `shutdown` comes first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> Wait {
        if shutdown.is_cancelled() {
            return Wait::Cancelled;
        }
        let Some(delay) = self.next_delay() else {
            return Wait::Exhausted;
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => Wait::Retry,
            _ = shutdown.cancelled() => Wait::Cancelled,
        }
    }
}

/// Why [`retry`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryError<E> {
    /// Every attempt the limits allow failed; the last error.
    Exhausted {
        /// Attempts made.
        attempts: u64,
        /// The last attempt's error.
        last: E,
    },
    /// Shutdown came during a wait; the last error.
    Cancelled {
        /// Attempts made.
        attempts: u64,
        /// The last attempt's error.
        last: E,
    },
}

impl<E> RetryError<E> {
    /// Attempts made before giving up.
    pub fn attempts(&self) -> u64 {
        match self {
            RetryError::Exhausted { attempts, .. } | RetryError::Cancelled { attempts, .. } => {
                *attempts
            }
        }
    }

    /// The last attempt's error.
    pub fn into_last(self) -> E {
        match self {
            RetryError::Exhausted { last, .. } | RetryError::Cancelled { last, .. } => last,
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryError::Exhausted { attempts, last } => {
                write!(f, "failed {attempts} attempts, last: {last}")
            }
            RetryError::Cancelled { attempts, last } => {
                write!(f, "shut down after {attempts} attempts, last: {last}")
            }
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for RetryError<E> {}

/// Runs `op` (given the 1-based attempt number) until it succeeds, `backoff`'s limits are
/// spent, or `shutdown`. Shutdown cuts a wait short, never an attempt in flight; a failed
/// attempt is never followed by a sleep when no attempt comes after it.
pub async fn retry<T, E, F, Fut>(
    mut backoff: Backoff,
    shutdown: &CancellationToken,
    mut op: F,
) -> Result<T, RetryError<E>>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        let attempt = backoff.failures() + 1;
        let last = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        match backoff.wait(shutdown).await {
            Wait::Retry => {}
            Wait::Exhausted => {
                return Err(RetryError::Exhausted {
                    attempts: attempt,
                    last,
                })
            }
            Wait::Cancelled => {
                return Err(RetryError::Cancelled {
                    attempts: attempt,
                    last,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_failure_is_retried_for_minutes_with_capped_backoff_before_the_dlq() {
        // Given the production policy and a handler that fails every time
        let policy = RetryPolicy::default();
        let mut clock_ms = 0u64;
        let mut delivered = 1u64;
        let mut delays = Vec::new();
        // When the clock advances by each nak delay
        while let RetryDecision::RetryAfter(delay) = policy.after_failure(delivered) {
            let delay = u64::try_from(delay.as_millis()).expect("fits");
            delays.push(delay);
            clock_ms += delay;
            delivered += 1;
        }
        // Then it is dead-lettered only after the whole budget, never waiting more than the cap
        assert!(clock_ms >= RETRY_BUDGET_MS, "{clock_ms}");
        assert!(
            clock_ms < RETRY_BUDGET_MS + RETRY_BACKOFF_MS_MAX,
            "{clock_ms}"
        );
        assert_eq!(delays[0], RETRY_BACKOFF_MS_MIN);
        assert!(delays.iter().all(|d| *d <= RETRY_BACKOFF_MS_MAX));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(policy.max_deliveries(), delivered);
        assert_eq!(policy.waited_ms(delivered), clock_ms);
    }

    #[test]
    fn a_small_budget_dead_letters_after_a_few_deliveries() {
        // Given
        let policy = RetryPolicy {
            backoff_ms_min: 100,
            backoff_ms_max: 400,
            budget_ms: 700,
        };
        // When / Then: 100 + 200 + 400 = 700 spent before the fourth delivery
        assert_eq!(
            policy.after_failure(1),
            RetryDecision::RetryAfter(Duration::from_millis(100))
        );
        assert_eq!(
            policy.after_failure(3),
            RetryDecision::RetryAfter(Duration::from_millis(400))
        );
        assert_eq!(policy.after_failure(4), RetryDecision::DeadLetter);
        assert_eq!(policy.max_deliveries(), 4);
        assert_eq!(policy.waited_ms(10), 100 + 200 + 400 * 7);
    }

    #[test]
    fn huge_delivery_counts_do_not_overflow() {
        // Given
        let policy = RetryPolicy::default();
        // When / Then
        assert_eq!(policy.after_failure(u64::MAX), RetryDecision::DeadLetter);
        assert_eq!(policy.backoff_ms(u64::MAX), RETRY_BACKOFF_MS_MAX);
    }

    fn delays(mut backoff: Backoff) -> Vec<u64> {
        std::iter::from_fn(|| backoff.next_delay())
            .map(|d| u64::try_from(d.as_millis()).expect("fits"))
            .take(1_000)
            .collect()
    }

    #[test]
    fn a_backoff_doubles_from_the_first_delay_up_to_the_cap() {
        // Given a loop without a budget
        let backoff = Backoff::new(RetryPolicy::forever(50, 2_000));
        // When it fails again and again
        let delays = delays(backoff);
        // Then the delays double, then stay at the cap, and never run out
        assert_eq!(delays[..8], [50, 100, 200, 400, 800, 1_600, 2_000, 2_000]);
        assert_eq!(delays.len(), 1_000);
        assert!(delays.iter().all(|d| *d <= 2_000));
    }

    #[test]
    fn a_backoff_stops_when_its_budget_is_spent() {
        // Given a budget of 700 ms of waiting
        let backoff = Backoff::new(RetryPolicy {
            backoff_ms_min: 100,
            backoff_ms_max: 400,
            budget_ms: 700,
        });
        // When / Then: four attempts, three waits summing to the budget, none after the last
        assert_eq!(delays(backoff), [100, 200, 400]);
    }

    #[test]
    fn a_backoff_with_an_attempt_limit_does_not_wait_after_the_last_attempt() {
        // Given four attempts in all
        let mut backoff = Backoff::new(RetryPolicy::forever(50, 10_000)).with_max_attempts(4);
        // When the first three fail, then the fourth
        let waits: Vec<_> = (0..3).map(|_| backoff.next_delay()).collect();
        let after_last = backoff.next_delay();
        // Then there are three waits and none after the fourth failure
        assert_eq!(
            waits,
            [50, 100, 200].map(|ms| Some(Duration::from_millis(ms)))
        );
        assert_eq!(after_last, None);
        assert_eq!(backoff.failures(), 4);
    }

    #[test]
    fn a_reset_backoff_starts_again_from_the_first_delay() {
        // Given a backoff that already failed three times
        let mut backoff = Backoff::new(RetryPolicy::forever(50, 2_000));
        for _ in 0..3 {
            backoff.next_delay();
        }
        // When an attempt succeeds
        backoff.reset();
        // Then the next failure waits the first delay again
        assert_eq!(backoff.next_delay(), Some(Duration::from_millis(50)));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_sleeps_each_delay_between_attempts_and_none_after_the_last() {
        // Given an operation that always fails, four attempts, on a paused clock
        let start = tokio::time::Instant::now();
        let mut started_at_ms = Vec::new();
        let backoff = Backoff::new(RetryPolicy::forever(50, 10_000)).with_max_attempts(4);
        // When it is retried
        let result: Result<(), _> = retry(backoff, &CancellationToken::new(), |attempt| {
            started_at_ms.push((attempt, start.elapsed().as_millis()));
            async move { Err(format!("attempt {attempt} failed")) }
        })
        .await;
        // Then each attempt starts after the previous delay, and it returns right after the last
        assert_eq!(started_at_ms, [(1, 0), (2, 50), (3, 150), (4, 350)]);
        assert_eq!(start.elapsed(), Duration::from_millis(350));
        assert_eq!(
            result,
            Err(RetryError::Exhausted {
                attempts: 4,
                last: "attempt 4 failed".to_owned()
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_returns_the_first_success() {
        // Given an operation that succeeds on its third attempt
        let backoff = Backoff::new(RetryPolicy::forever(50, 10_000)).with_max_attempts(10);
        // When it is retried
        let result = retry(backoff, &CancellationToken::new(), |attempt| async move {
            if attempt < 3 {
                Err("not yet")
            } else {
                Ok(attempt)
            }
        })
        .await;
        // Then
        assert_eq!(result, Ok(3));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_a_wait_short() {
        // Given a loop waiting 10 s between attempts, and a shutdown 75 ms in
        let start = tokio::time::Instant::now();
        let shutdown = CancellationToken::new();
        let cancel = shutdown.clone();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(75)).await;
            cancel.cancel();
        });
        let mut attempts = 0;
        // When the first attempt fails
        let result: Result<(), _> = retry(
            Backoff::new(RetryPolicy::forever(10_000, 10_000)),
            &shutdown,
            |_| {
                attempts += 1;
                async { Err("down") }
            },
        )
        .await;
        canceller.await.expect("canceller ran");
        // Then it returns at shutdown, not after the delay, without another attempt
        assert_eq!(start.elapsed(), Duration::from_millis(75));
        assert_eq!(attempts, 1);
        assert_eq!(
            result,
            Err(RetryError::Cancelled {
                attempts: 1,
                last: "down"
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_after_shutdown_returns_at_once_and_spends_nothing() {
        // Given a shut down token
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut backoff = Backoff::new(RetryPolicy::forever(50, 2_000));
        let start = tokio::time::Instant::now();
        // When / Then
        assert_eq!(backoff.wait(&shutdown).await, Wait::Cancelled);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(backoff.failures(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_wait_does_not_sleep() {
        // Given a single-attempt backoff
        let mut backoff = Backoff::new(RetryPolicy::forever(50, 2_000)).with_max_attempts(1);
        let start = tokio::time::Instant::now();
        // When / Then
        assert_eq!(
            backoff.wait(&CancellationToken::new()).await,
            Wait::Exhausted
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
