//! Account lockout, Power Pages style: consecutive failures lock the account for a time that grows
//! with each lockout, capped so an attacker can never lock it for good.

use super::ids::ContactId;
use super::secret::digest;
use super::time::Timestamp;

/// What a password attempt counts against: the account its login names or, for a login that no
/// account has, the login itself. Both are counted, reserved and locked alike, so neither the time
/// a sign-in takes nor its answer tells whether an account has that login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptSubject {
    Account(ContactId),
    /// The digest of a normalised login that matches no account.
    UnknownLogin(String),
}

impl AttemptSubject {
    /// The subject of a login that no account has: `login_key` is the login in its normalised
    /// form (`Login::key`), or the text as typed when it is no login at all.
    pub fn unknown_login(login_key: &str) -> Self {
        AttemptSubject::UnknownLogin(digest(&format!("login#{login_key}")))
    }
}

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

/// How long a reserved attempt holds its place: a check that has not ended by then (its function
/// died) no longer counts against the threshold's room, so it can never block the account for good.
pub const ATTEMPT_HOLD_SECS: i64 = 60;

/// The lockout state kept on a contact. `failed_sign_ins` counts attempts taken before their
/// password check (see [`LockoutState::reserve`]) that have not yet succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockoutState {
    pub failed_sign_ins: u32,
    pub lockouts: u32,
    pub locked_until: Option<Timestamp>,
    /// When the last attempt was taken.
    pub attempted_at: Option<Timestamp>,
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

    /// Takes one attempt before the password is checked: `None` (refused) while locked, or while
    /// `threshold` attempts are counted and the last is recent (in flight or failed). The in-memory
    /// store applies this directly; the DynamoDB store applies the same rule as one conditional
    /// update, so that parallel guesses cannot all pass a check made before any of them counts.
    pub fn reserve(&self, now: Timestamp, policy: &LockoutPolicy) -> Option<LockoutState> {
        let held = self.attempted_at.is_some_and(|at| at > now - ATTEMPT_HOLD_SECS);
        if self.is_locked(now) || (self.failed_sign_ins >= policy.threshold && held) {
            return None;
        }
        Some(LockoutState { failed_sign_ins: self.failed_sign_ins + 1, attempted_at: Some(now), ..*self })
    }

    /// The state after a reserved attempt failed its check at `now`: the attempt stays counted, and
    /// the account locks once the count reached the threshold.
    pub fn after_failure(&self, now: Timestamp, policy: &LockoutPolicy) -> (LockoutState, FailedSignIn) {
        if self.is_locked(now) {
            return (*self, FailedSignIn::AlreadyLocked);
        }
        if self.failed_sign_ins >= policy.threshold {
            let lockouts = self.lockouts + 1;
            let until = now + policy.duration_secs(lockouts);
            let state = LockoutState { failed_sign_ins: 0, lockouts, locked_until: Some(until), ..*self };
            return (state, FailedSignIn::LockedOut { until });
        }
        (*self, FailedSignIn::Counted)
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

    /// A reserved attempt followed by a failed check, as a sign-in does.
    fn fail(state: LockoutState, now: i64) -> (LockoutState, FailedSignIn) {
        let now = Timestamp::from_secs(now);
        state.reserve(now, &POLICY).expect("an attempt is free").after_failure(now, &POLICY)
    }

    #[test]
    fn the_threshold_th_consecutive_failure_locks() {
        let mut state = LockoutState::default();
        for _ in 0..4 {
            let (next, outcome) = fail(state, 1000);
            assert_eq!(outcome, FailedSignIn::Counted);
            state = next;
        }
        let (state, outcome) = fail(state, 1000);
        assert_eq!(outcome, FailedSignIn::LockedOut { until: Timestamp::from_secs(1300) });
        assert!(state.is_locked(Timestamp::from_secs(1299)));
        assert!(!state.is_locked(Timestamp::from_secs(1300)));
    }

    #[test]
    fn failures_while_locked_do_not_extend_the_lockout() {
        let locked = LockoutState { lockouts: 1, locked_until: Some(Timestamp::from_secs(1300)), ..Default::default() };
        assert_eq!(locked.reserve(Timestamp::from_secs(1200), &POLICY), None, "no attempt while locked");
        let (after, outcome) = locked.after_failure(Timestamp::from_secs(1200), &POLICY);
        assert_eq!(outcome, FailedSignIn::AlreadyLocked);
        assert_eq!(after, locked);
    }

    #[test]
    fn a_second_lockout_lasts_longer() {
        let expired = LockoutState {
            failed_sign_ins: 4,
            lockouts: 1,
            locked_until: Some(Timestamp::from_secs(1300)),
            attempted_at: None,
        };
        let (_, outcome) = fail(expired, 2000);
        assert_eq!(outcome, FailedSignIn::LockedOut { until: Timestamp::from_secs(2600) });
    }

    #[test]
    fn no_more_attempts_than_the_threshold_are_in_flight_at_once() {
        let mut state = LockoutState::default();
        let now = Timestamp::from_secs(1000);
        for _ in 0..5 {
            state = state.reserve(now, &POLICY).expect("within the threshold");
        }
        assert_eq!(state.reserve(now, &POLICY), None, "the sixth parallel guess waits for the five");
        assert!(state.reserve(now + ATTEMPT_HOLD_SECS, &POLICY).is_some(), "a check that never ended lets go");
    }
}
