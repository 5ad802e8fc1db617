//! The one retry policy: exponential backoff with a cap and a total budget, used by the
//! consumer runner's naks and by every in-process retry loop.

use std::time::Duration;

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

    /// The delivery at which a message that always fails is dead-lettered.
    pub fn max_deliveries(&self) -> u64 {
        let mut delivered = 1;
        while self.after_failure(delivered) != RetryDecision::DeadLetter {
            delivered += 1;
        }
        delivered
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
}
