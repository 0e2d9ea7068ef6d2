//! A token bucket: how fast one connection may publish. It holds up to
//! `capacity` tokens, refills continuously at `per_sec`, and each publish
//! takes one; a burst up to the capacity passes at once, a steady flow only
//! at the refill rate.

use std::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: f64, per_sec: f64, now: Instant) -> Self {
        Self {
            capacity,
            per_sec,
            tokens: capacity,
            refilled: now,
        }
    }

    /// Takes a token if one is there at `now`; `false`: over the rate.
    pub fn take(&mut self, now: Instant) -> bool {
        // A clock read earlier than the last refill adds nothing.
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.refilled = self.refilled.max(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_up_to_the_capacity_passes_then_nothing() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3.0, 1.0, start);
        assert!(bucket.take(start));
        assert!(bucket.take(start));
        assert!(bucket.take(start));
        assert!(!bucket.take(start));
    }

    #[test]
    fn it_refills_at_the_rate_and_never_beyond_the_capacity() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 10.0, start);
        assert!(bucket.take(start));
        assert!(bucket.take(start));
        assert!(!bucket.take(start));
        // 50 ms at 10/s is half a token: not yet.
        assert!(!bucket.take(start + Duration::from_millis(50)));
        assert!(bucket.take(start + Duration::from_millis(100)));
        assert!(!bucket.take(start + Duration::from_millis(100)));
        // A long pause fills it to the capacity only.
        let later = start + Duration::from_secs(60);
        assert!(bucket.take(later));
        assert!(bucket.take(later));
        assert!(!bucket.take(later));
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut bucket = TokenBucket::new(1.0, 10.0, start);
        assert!(bucket.take(start));
        assert!(!bucket.take(start - Duration::from_secs(1)));
        assert!(!bucket.take(start));
    }
}
