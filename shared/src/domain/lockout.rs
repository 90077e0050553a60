//! Account lockout, Power Pages style: consecutive failures lock the account for a time that grows
//! with each lockout, capped so an attacker can never lock it for good.

use super::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures that lock the account.
    pub threshold: u32,
    /// The first lockout's length.
    pub base_secs: i64,
    /// The longest a lockout may be.
    pub max_secs: i64,
}

impl LockoutPolicy {
    /// How long the `lockout_number`-th consecutive lockout lasts (1-based): doubling, capped.
    pub fn duration_secs(&self, lockout_number: u32) -> i64 {
        let doublings = lockout_number.saturating_sub(1).min(30);
        self.base_secs.saturating_mul(1i64 << doublings).min(self.max_secs)
    }
}

/// The lockout state kept on a contact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockoutState {
    pub failed_sign_ins: u32,
    pub lockouts: u32,
    pub locked_until: Option<Timestamp>,
}

/// What one more failed sign-in did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedSignIn {
    /// Counted towards the threshold.
    Counted,
    /// This failure reached the threshold: locked until the given time.
    LockedOut { until: Timestamp },
    /// The account was already locked: nothing changes (failures do not extend a lockout).
    AlreadyLocked,
}

impl LockoutState {
    pub fn is_locked(&self, now: Timestamp) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// Whether a successful sign-in has anything to reset.
    pub fn needs_reset(&self) -> bool {
        self.failed_sign_ins > 0 || self.lockouts > 0 || self.locked_until.is_some()
    }

    /// The state after one more failure at `now` (the in-memory store applies this directly; the
    /// DynamoDB store applies the same rule with conditional updates).
    pub fn after_failure(&self, now: Timestamp, policy: &LockoutPolicy) -> (LockoutState, FailedSignIn) {
        if self.is_locked(now) {
            return (*self, FailedSignIn::AlreadyLocked);
        }
        let failed = self.failed_sign_ins + 1;
        if failed >= policy.threshold {
            let lockouts = self.lockouts + 1;
            let until = now + policy.duration_secs(lockouts);
            let state = LockoutState { failed_sign_ins: 0, lockouts, locked_until: Some(until) };
            return (state, FailedSignIn::LockedOut { until });
        }
        (LockoutState { failed_sign_ins: failed, ..*self }, FailedSignIn::Counted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy { threshold: 5, base_secs: 300, max_secs: 3600 };

    #[test]
    fn lockout_grows_with_each_lockout_and_is_capped() {
        let cases = [(1, 300), (2, 600), (3, 1200), (4, 2400), (5, 3600), (40, 3600), (u32::MAX, 3600)];
        for (number, expected) in cases {
            assert_eq!(POLICY.duration_secs(number), expected, "lockout {number}");
        }
    }

    #[test]
    fn the_threshold_th_consecutive_failure_locks() {
        let mut state = LockoutState::default();
        for _ in 0..4 {
            let (next, outcome) = state.after_failure(Timestamp::from_secs(1000), &POLICY);
            assert_eq!(outcome, FailedSignIn::Counted);
            state = next;
        }
        let (state, outcome) = state.after_failure(Timestamp::from_secs(1000), &POLICY);
        assert_eq!(outcome, FailedSignIn::LockedOut { until: Timestamp::from_secs(1300) });
        assert!(state.is_locked(Timestamp::from_secs(1299)));
        assert!(!state.is_locked(Timestamp::from_secs(1300)));
    }

    #[test]
    fn failures_while_locked_do_not_extend_the_lockout() {
        let locked = LockoutState { failed_sign_ins: 0, lockouts: 1, locked_until: Some(Timestamp::from_secs(1300)) };
        let (after, outcome) = locked.after_failure(Timestamp::from_secs(1200), &POLICY);
        assert_eq!(outcome, FailedSignIn::AlreadyLocked);
        assert_eq!(after, locked);
    }

    #[test]
    fn a_second_lockout_lasts_longer() {
        let expired = LockoutState { failed_sign_ins: 4, lockouts: 1, locked_until: Some(Timestamp::from_secs(1300)) };
        let (_, outcome) = expired.after_failure(Timestamp::from_secs(2000), &POLICY);
        assert_eq!(outcome, FailedSignIn::LockedOut { until: Timestamp::from_secs(2600) });
    }
}
