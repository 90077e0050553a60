//! Pacing emails to the SES account's sending rate, shared by every concurrent `send-email` run:
//! one stored value, the time of the next free sending slot (a token bucket without burst, in the
//! form of the generic cell rate algorithm). A run takes the slot at `max(now, next)` and moves
//! `next` one interval on, with a conditional write, so two runs never get the same slot; then it
//! waits for its slot. A slot further away than the run may wait is not taken: the message goes back
//! to the stream for a later try, and no mail is lost.

/// Slots are this much (5%) further apart than the rate allows: a run hands its email over a few
/// milliseconds after its slot began, the next one on time, and two sends must never come closer
/// than the rate's interval.
const MARGIN: f64 = 1.05;

/// Milliseconds between two sends at `per_second` emails a second, with the margin (at least
/// 1 ms; a rate of zero or less, which no account has, counts as one a second).
pub fn interval_ms(per_second: f64) -> i64 {
    let per_second = if per_second.is_nan() || per_second <= 0.0 { 1.0 } else { per_second };
    ((1_000.0 * MARGIN / per_second).ceil() as i64).max(1)
}

/// A reservation's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Send at `at` (milliseconds since the epoch); the stored next slot becomes `next`.
    At { at: i64, next: i64 },
    /// The next free slot is more than the allowed wait away.
    TooFar { free_at: i64 },
}

/// The slot a sender asking at `now` gets, given the stored `next` free slot.
pub fn reserve(next: Option<i64>, now: i64, interval: i64, max_wait: i64) -> Slot {
    let at = next.map_or(now, |next| next.max(now));
    if at - now > max_wait {
        return Slot::TooFar { free_at: at };
    }
    Slot::At { at, next: at + interval }
}

/// After SES said "too fast" (throttling, `MaxSendRate exceeded`): no slot before `now + pause`.
pub fn backed_off(next: Option<i64>, now: i64, pause: i64) -> i64 {
    next.unwrap_or(now).max(now + pause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_follows_the_rate() {
        assert_eq!(interval_ms(1.0), 1_050);
        assert_eq!(interval_ms(14.0), 75);
        assert_eq!(interval_ms(0.5), 2_100);
        assert_eq!(interval_ms(0.0), 1_050);
        assert_eq!(interval_ms(f64::NAN), 1_050);
        assert!((1..=1_000).all(|rate| interval_ms(f64::from(rate)) * i64::from(rate) >= 1_000));
    }

    #[test]
    fn slots_taken_one_after_another_are_one_interval_apart_and_never_closer() {
        let (interval, max_wait) = (1_000, 8_000);
        let mut next = None;
        let mut sends = Vec::new();
        // Twelve senders ask at once, then one more 20 s later.
        for _ in 0..12 {
            match reserve(next, 10_000, interval, max_wait) {
                Slot::At { at, next: n } => {
                    sends.push(at);
                    next = Some(n);
                }
                Slot::TooFar { free_at } => assert!(free_at - 10_000 > max_wait),
            }
        }
        assert_eq!(sends.len(), 9, "only the slots within the wait are taken: {sends:?}");
        assert!(sends.windows(2).all(|w| w[1] - w[0] >= interval));
        let Slot::At { at, .. } = reserve(next, 30_000, interval, max_wait) else { panic!() };
        assert_eq!(at, 30_000, "an idle sender sends at once");
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
