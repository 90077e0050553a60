//! Pacing emails to the SES account's sending rate, shared by every concurrent `send-email` run:
//! one stored value, the time of the next free sending slot (a token bucket without burst, in the
//! form of the generic cell rate algorithm). A run takes the slot at `max(next, now + lead)` and
//! moves `next` one interval on, with a conditional write, so two runs never get the same slot;
//! then it waits for its slot and sends.
//!
//! A slot is a deadline as well as a start: the email must be handed over within the slot's slack
//! (the interval's margin over the rate). A run whose reservation came back after that, because
//! the write was slow, lets the slot go unused and takes another; so no two hand-overs are ever
//! closer than the rate allows, however slow the store. `lead` is how far ahead a run reserves, so
//! that its write is normally back before its slot begins. A slot further away than the run may
//! wait is not taken: the message goes back to the stream for a later try, and no mail is lost.

/// The spacing of sends at an account's rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spacing {
    /// Milliseconds from one slot to the next.
    pub interval_ms: i64,
    /// How late in its slot an email may still be handed over: the interval's margin over the
    /// rate, so that two hand-overs are never closer than the rate's own interval.
    pub slack_ms: i64,
}

/// The margin: 5% of the rate's interval, and at least this many milliseconds (a run's wake-up
/// and hand-over take a few).
const MIN_SLACK_MS: f64 = 10.0;

impl Spacing {
    /// Spacing for `per_second` emails a second (a rate of zero or less, which no account has,
    /// counts as one a second).
    pub fn for_rate(per_second: f64) -> Spacing {
        let per_second = if per_second.is_nan() || per_second <= 0.0 { 1.0 } else { per_second };
        let base = 1_000.0 / per_second;
        let slack = (base * 0.05).max(MIN_SLACK_MS).ceil();
        Spacing { interval_ms: (base + slack).ceil() as i64, slack_ms: slack as i64 }
    }

    /// Whether a run that is ready at `now` may still use its slot starting `at`: within the
    /// first half of the slack, the other half covering the steps to the hand-over.
    pub fn in_slot(&self, at: i64, now: i64) -> bool {
        now >= at && now <= at + self.slack_ms / 2
    }
}

/// A reservation's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Send at `at` (milliseconds since the epoch), if the stored next slot is still at most `at`;
    /// it becomes `next`.
    At { at: i64, next: i64 },
    /// The next free slot is more than the allowed wait away.
    TooFar { free_at: i64 },
}

/// The slot a sender asking at `now` asks for, given the stored `next` free slot (if known) and
/// how far ahead it reserves.
pub fn reserve(next: Option<i64>, now: i64, lead: i64, spacing: Spacing, max_wait: i64) -> Slot {
    let at = next.unwrap_or(i64::MIN).max(now + lead);
    if at - now > max_wait {
        return Slot::TooFar { free_at: at };
    }
    Slot::At { at, next: at + spacing.interval_ms }
}

/// How far ahead to reserve, from the last reservation write's duration: twice that, between
/// 20 ms and 2 s.
pub fn lead_ms(last_write_ms: i64) -> i64 {
    (2 * last_write_ms).clamp(20, 2_000)
}

/// After SES said "too fast" (throttling, `MaxSendRate exceeded`): no slot before `now + pause`.
pub fn backed_off(next: Option<i64>, now: i64, pause: i64) -> i64 {
    next.unwrap_or(now).max(now + pause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spacing_follows_the_rate() {
        assert_eq!(Spacing::for_rate(1.0), Spacing { interval_ms: 1_050, slack_ms: 50 });
        assert_eq!(Spacing::for_rate(14.0), Spacing { interval_ms: 82, slack_ms: 10 });
        assert_eq!(Spacing::for_rate(0.5).interval_ms, 2_100);
        assert_eq!(Spacing::for_rate(0.0).interval_ms, 1_050);
        assert_eq!(Spacing::for_rate(f64::NAN).interval_ms, 1_050);
        for rate in 1..=1_000 {
            let spacing = Spacing::for_rate(f64::from(rate));
            // Two hand-overs, each at worst at the end of its slot's slack, are a rate apart.
            assert!((spacing.interval_ms - spacing.slack_ms) * i64::from(rate) >= 1_000, "{rate}: {spacing:?}");
        }
    }

    #[test]
    fn slots_taken_one_after_another_are_one_interval_apart_and_never_closer() {
        let spacing = Spacing::for_rate(1.0);
        let max_wait = 8_000;
        let mut next = None;
        let mut sends = Vec::new();
        // Twelve senders ask at once, then one more 20 s later.
        for _ in 0..12 {
            match reserve(next, 10_000, 100, spacing, max_wait) {
                Slot::At { at, next: n } => {
                    sends.push(at);
                    next = Some(n);
                }
                Slot::TooFar { free_at } => assert!(free_at - 10_000 > max_wait),
            }
        }
        assert_eq!(sends.len(), 8, "only the slots within the wait are taken: {sends:?}");
        assert_eq!(sends[0], 10_100, "the first is one lead ahead");
        assert!(sends.windows(2).all(|w| w[1] - w[0] >= spacing.interval_ms));
        let Slot::At { at, .. } = reserve(next, 30_000, 100, spacing, max_wait) else { panic!() };
        assert_eq!(at, 30_100, "an idle sender sends one lead ahead");
    }

    #[test]
    fn a_slot_is_kept_only_within_its_slack() {
        let spacing = Spacing::for_rate(1.0);
        assert!(!spacing.in_slot(5_000, 4_999), "not before it begins");
        assert!(spacing.in_slot(5_000, 5_000));
        assert!(spacing.in_slot(5_000, 5_025));
        assert!(!spacing.in_slot(5_000, 5_026), "a reservation back too late leaves its slot unused");
    }

    #[test]
    fn the_lead_follows_the_store_within_bounds() {
        assert_eq!(lead_ms(0), 20);
        assert_eq!(lead_ms(150), 300);
        assert_eq!(lead_ms(5_000), 2_000);
    }

    #[test]
    fn throttling_pushes_the_next_slot_back() {
        assert_eq!(backed_off(None, 1_000, 2_000), 3_000);
        assert_eq!(backed_off(Some(9_000), 1_000, 2_000), 9_000);
    }
}

/// Whether an email service's refusal means "sending too fast" (SES v2 `TooManyRequestsException`
/// or `LimitExceededException`, v1 `Throttling` with "Maximum sending rate exceeded").
pub fn is_throttling(reason: &str) -> bool {
    const SIGNS: &[&str] =
        &["TooManyRequests", "Throttling", "MaxSendRate", "Maximum sending rate", "LimitExceeded", "Rate exceeded"];
    SIGNS.iter().any(|sign| reason.contains(sign))
}

#[cfg(test)]
mod throttling_tests {
    #[test]
    fn throttling_is_told_from_other_refusals() {
        assert!(super::is_throttling("service error: TooManyRequestsException: slow down"));
        assert!(super::is_throttling("Throttling: Maximum sending rate exceeded."));
        assert!(!super::is_throttling("MessageRejected: Email address is not verified."));
    }
}
