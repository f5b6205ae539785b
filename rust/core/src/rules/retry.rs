//! Retry decisions for a failed activity attempt.

use crate::history::{Failure, RetryPolicy};

/// What to do after an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Run attempt `attempt + 1` once this many milliseconds have passed.
    RetryAfter(u64),
    /// Give up: record the failure in history.
    GiveUp,
}

/// Backoff before attempt `failed_attempt + 1`: `initial × coefficient^(failed_attempt − 1)`,
/// capped by `maximum_interval` (default 100 × initial, as in Temporal).
pub fn backoff_ms(policy: &RetryPolicy, failed_attempt: u32) -> u64 {
    let initial = policy.initial_interval_ms.max(1) as f64;
    let cap = policy
        .maximum_interval_ms
        .unwrap_or(policy.initial_interval_ms.saturating_mul(100))
        .max(1) as f64;
    let exponent = failed_attempt.saturating_sub(1).min(1_000) as i32;
    let interval = initial * policy.backoff_coefficient.max(1.0).powi(exponent);
    interval.min(cap) as u64
}

/// Decides whether attempt `failed_attempt` (1-based) is retried, given the time left before
/// the schedule-to-close deadline if there is one.
pub fn decide(
    policy: &RetryPolicy,
    failure: &Failure,
    failed_attempt: u32,
    now_ms: i64,
    schedule_to_close_deadline_ms: Option<i64>,
) -> RetryDecision {
    if failure.non_retryable
        || policy
            .non_retryable_error_types
            .contains(&failure.error_type)
    {
        return RetryDecision::GiveUp;
    }
    if policy.maximum_attempts != 0 && failed_attempt >= policy.maximum_attempts {
        return RetryDecision::GiveUp;
    }
    // The failure may name its own next delay (`ApplicationError(next_retry_delay=...)`), as in
    // Temporal: it replaces the policy's backoff for this retry only, uncapped.
    let delay = failure
        .next_retry_delay_ms
        .unwrap_or_else(|| backoff_ms(policy, failed_attempt));
    if let Some(deadline) = schedule_to_close_deadline_ms {
        if now_ms.saturating_add(delay as i64) >= deadline {
            return RetryDecision::GiveUp;
        }
    }
    RetryDecision::RetryAfter(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial_interval_ms: 100,
            backoff_coefficient: 2.0,
            maximum_interval_ms: Some(500),
            maximum_attempts: 4,
            non_retryable_error_types: vec!["Fatal".into()],
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy();
        assert_eq!(backoff_ms(&p, 1), 100);
        assert_eq!(backoff_ms(&p, 2), 200);
        assert_eq!(backoff_ms(&p, 3), 400);
        assert_eq!(backoff_ms(&p, 4), 500);
        assert_eq!(backoff_ms(&p, 60), 500);
    }

    #[test]
    fn default_cap_is_a_hundred_times_initial() {
        let p = RetryPolicy::default();
        assert_eq!(backoff_ms(&p, 30), 100_000);
    }

    #[test]
    fn gives_up_after_maximum_attempts_and_on_non_retryable() {
        let p = policy();
        let failure = Failure::new("boom", "ValueError");
        assert_eq!(
            decide(&p, &failure, 3, 0, None),
            RetryDecision::RetryAfter(400)
        );
        assert_eq!(decide(&p, &failure, 4, 0, None), RetryDecision::GiveUp);
        let fatal = Failure::new("boom", "Fatal");
        assert_eq!(decide(&p, &fatal, 1, 0, None), RetryDecision::GiveUp);
        let flagged = Failure {
            non_retryable: true,
            ..Failure::new("boom", "ValueError")
        };
        assert_eq!(decide(&p, &flagged, 1, 0, None), RetryDecision::GiveUp);
    }

    #[test]
    fn a_failure_can_name_its_next_delay() {
        let failure = Failure {
            next_retry_delay_ms: Some(7_000),
            ..Failure::new("busy", "RateLimited")
        };
        assert_eq!(
            decide(&policy(), &failure, 1, 0, None),
            RetryDecision::RetryAfter(7_000)
        );
        assert_eq!(
            decide(&policy(), &failure, 1, 0, Some(5_000)),
            RetryDecision::GiveUp,
            "past schedule-to-close"
        );
    }

    #[test]
    fn gives_up_when_the_retry_would_pass_schedule_to_close() {
        let p = policy();
        let failure = Failure::new("boom", "ValueError");
        assert_eq!(
            decide(&p, &failure, 1, 1_000, Some(1_050)),
            RetryDecision::GiveUp
        );
        assert_eq!(
            decide(&p, &failure, 1, 1_000, Some(2_000)),
            RetryDecision::RetryAfter(100)
        );
    }
}
