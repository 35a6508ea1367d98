//! Momentum: how alive a lead is, from the recency and frequency of its engagement.
//!
//! Every engagement adds its playbook weight to the score and the whole score halves every
//! half-life of silence: `score(t) = Σ wᵢ · 2^(−(t − tᵢ)/h)`. Because every term decays at the
//! same rate, the sum is one number and one instant (`score(t) = s₀ · 2^(−(t − t₀)/h)`), and the
//! instant the score falls to a threshold θ is exact: `t₀ + h · log₂(s₀/θ)`. The service sets
//! a timer for that instant rather than polling the score.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// The score as of an instant; it decays from there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Momentum {
    #[serde(with = "exact")]
    pub score: f64,
    pub as_of: Timestamp,
}

/// The score is stored as its shortest decimal text, which Rust reads back to the same
/// number: serde_json reads long JSON numbers to within one ulp only (without its
/// `float_roundtrip` feature), and a stored enrolment must read back exactly as it was.
mod exact {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Text(String),
            Number(f64),
        }
        match Text::deserialize(deserializer)? {
            Text::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Text::Number(n) => Ok(n),
        }
    }
}

impl Momentum {
    pub fn new(score: f64, as_of: Timestamp) -> Self {
        Self { score, as_of }
    }

    /// The score at `now`. Before `as_of` (a clock that went backwards) it is the score at
    /// `as_of`: momentum never grows from silence.
    pub fn at(self, now: Timestamp, half_life: SignedDuration) -> f64 {
        let elapsed = now.duration_since(self.as_of).as_secs_f64().max(0.0);
        let half = half_life.as_secs_f64();
        if half <= 0.0 {
            return self.score;
        }
        self.score * (-elapsed / half).exp2()
    }

    /// The score after an engagement of `weight` at `now`.
    pub fn add(self, weight: f64, now: Timestamp, half_life: SignedDuration) -> Self {
        let now = now.max(self.as_of);
        Self {
            score: self.at(now, half_life) + weight,
            as_of: now,
        }
    }

    /// The instant the score falls below `threshold` with no further engagement: `as_of` or
    /// before when it is below already. `None` when it never will (a threshold of zero or
    /// less, or no decay).
    pub fn crossing(self, threshold: f64, half_life: SignedDuration) -> Option<Timestamp> {
        let half = half_life.as_secs_f64();
        if threshold <= 0.0 || half <= 0.0 {
            return None;
        }
        if self.score <= threshold {
            return Some(self.as_of);
        }
        let secs = half * (self.score / threshold).log2();
        // Round up to whole milliseconds: at the returned instant the score must be below the
        // threshold already, so a timer set for it always finds something to do.
        let millis = (secs * 1000.0).ceil();
        let after = SignedDuration::from_millis(millis.min(i64::MAX as f64) as i64);
        Some(self.as_of.checked_add(after).unwrap_or(Timestamp::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    const DAY: SignedDuration = SignedDuration::from_hours(24);

    #[test]
    fn the_score_halves_every_half_life() {
        let m = Momentum::new(4.0, ts("2026-03-02T00:00:00Z"));
        let h = DAY * 3;
        assert_eq!(m.at(ts("2026-03-02T00:00:00Z"), h), 4.0);
        assert!((m.at(ts("2026-03-05T00:00:00Z"), h) - 2.0).abs() < 1e-12);
        assert!((m.at(ts("2026-03-08T00:00:00Z"), h) - 1.0).abs() < 1e-12);
        // never grows backwards
        assert_eq!(m.at(ts("2026-03-01T00:00:00Z"), h), 4.0);
    }

    #[test]
    fn engagement_adds_to_the_decayed_score() {
        let h = DAY;
        let m = Momentum::new(2.0, ts("2026-03-02T00:00:00Z"));
        let m = m.add(3.0, ts("2026-03-03T00:00:00Z"), h);
        assert!((m.score - 4.0).abs() < 1e-12);
        assert_eq!(m.as_of, ts("2026-03-03T00:00:00Z"));
    }

    #[test]
    fn the_crossing_is_exact() {
        let h = DAY * 3;
        let m = Momentum::new(1.0, ts("2026-03-02T00:00:00Z"));
        // 1.0 -> 0.25 is two half-lives
        let at = m.crossing(0.25, h).unwrap();
        assert_eq!(at, ts("2026-03-08T00:00:00Z"));
        assert!(m.at(at, h) <= 0.25);
        // an odd ratio: just after the crossing it is below, just before above
        let m = Momentum::new(1.7, ts("2026-03-02T00:00:00Z"));
        let at = m.crossing(0.3, h).unwrap();
        assert!(m.at(at, h) <= 0.3);
        assert!(m.at(at - SignedDuration::from_secs(1), h) > 0.3);
        // already below: due at once; never: no instant
        assert_eq!(
            Momentum::new(0.1, ts("2026-03-02T00:00:00Z")).crossing(0.25, h),
            Some(ts("2026-03-02T00:00:00Z"))
        );
        assert_eq!(m.crossing(0.0, h), None);
    }
}
