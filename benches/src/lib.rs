//! Deterministic, seed-like events for Bowman's tests and benchmarks.
//!
//! [`EventGenerator`] produces the kind of traffic the platform ingests: 600 event types, users
//! with a skewed activity distribution, products, epoch-millisecond timestamps spread over 30
//! days in arrival order, coordinates inside the contiguous United States, and a `properties`
//! object. Like real traffic, about 1% of events are exact duplicates of a recent event (client
//! retries) and 0.5% arrive late: their timestamp lies days before their neighbours'.
//!
//! The same seed always yields the same bytes, on every platform: the generator uses its own
//! SplitMix64, not a library RNG whose algorithm may change between versions.

use serde_json::json;

/// 2018-03-01T00:00:00Z in epoch milliseconds: the first day of the generated month.
pub const START_MILLIS: i64 = 1_519_862_400_000;
pub const DAYS: i64 = 30;
const DAY_MILLIS: i64 = 86_400_000;

/// Contiguous US bounding box (lat, lon).
pub const US_LAT: (f64, f64) = (24.6, 49.0);
pub const US_LON: (f64, f64) = (-124.6, -67.0);

pub const DUPLICATE_RATE: f64 = 0.01;
pub const LATE_RATE: f64 = 0.005;

const CATEGORIES: [&str; 30] = [
    "app", "auth", "cart", "catalog", "checkout", "coupon", "delivery", "feed", "gift", "help", "home", "inbox", "invite",
    "list", "location", "loyalty", "map", "media", "notification", "onboarding", "order", "payment", "product", "profile",
    "rating", "referral", "search", "settings", "share", "wishlist",
];
const ACTIONS: [&str; 20] = [
    "view", "click", "open", "close", "scroll", "submit", "error", "add", "remove", "update", "start", "complete", "cancel",
    "retry", "swipe", "select", "impression", "dismiss", "expand", "confirm",
];
const PLATFORMS: [&str; 4] = ["ios", "android", "web", "tablet"];

/// The 600 event type names (`category.action`).
pub fn event_types() -> Vec<String> {
    CATEGORIES.iter().flat_map(|c| ACTIONS.iter().map(move |a| format!("{c}.{a}"))).collect()
}

/// SplitMix64: tiny, fast, and fully specified, so the output never changes with a dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Generates `rows` events (duplicates included) for a seed.
pub struct EventGenerator {
    rng: SplitMix64,
    types: Vec<String>,
    rows: u64,
    emitted: u64,
    recent: Vec<String>,
    users: u64,
    products: u64,
}

impl EventGenerator {
    pub fn new(rows: u64, seed: u64) -> Self {
        EventGenerator {
            rng: SplitMix64::new(seed),
            types: event_types(),
            rows,
            emitted: 0,
            recent: Vec::with_capacity(64),
            // About one user per 20 events, at least 1000, so small runs still repeat users.
            users: (rows / 20).max(1000),
            products: 50_000,
        }
    }

    /// Heavier users appear more often: a power-law pick over the user ids.
    fn user_id(&mut self) -> u64 {
        let u = self.rng.next_f64();
        1 + ((u * u * u) * self.users as f64) as u64
    }

    fn fresh_event(&mut self) -> String {
        // Arrival order: timestamps grow with the event's position, with a little jitter.
        let progress = self.emitted as f64 / self.rows.max(1) as f64;
        let mut ts = START_MILLIS + (progress * (DAYS * DAY_MILLIS) as f64) as i64 + self.rng.below(60_000) as i64;
        let late = self.rng.next_f64() < LATE_RATE / (1.0 - DUPLICATE_RATE);
        if late {
            // Days before its neighbours (but never before the month starts).
            ts = (ts - (1 + self.rng.below(6) as i64) * DAY_MILLIS - self.rng.below(DAY_MILLIS as u64) as i64).max(START_MILLIS);
        }
        let event_type = self.types[self.rng.below(self.types.len() as u64) as usize].clone();
        let user_id = self.user_id();
        let product_id = 1 + self.rng.below(self.products);
        let lat = US_LAT.0 + self.rng.next_f64() * (US_LAT.1 - US_LAT.0);
        let lon = US_LON.0 + self.rng.next_f64() * (US_LON.1 - US_LON.0);
        let event_id = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        let platform = PLATFORMS[self.rng.below(PLATFORMS.len() as u64) as usize];
        let session = format!("{:012x}", self.rng.next_u64() >> 16);
        let price_cents = self.rng.below(100_000);
        json!({
            "event_id": event_id,
            "event_type": event_type,
            "user_id": user_id,
            "product_id": product_id,
            "timestamp": ts,
            "latitude": (lat * 1e6).round() / 1e6,
            "longitude": (lon * 1e6).round() / 1e6,
            "properties": {
                "platform": platform,
                "session_id": session,
                "app_version": format!("5.{}.{}", self.rng.below(12), self.rng.below(10)),
                "price": price_cents as f64 / 100.0,
                "late": late,
            }
        })
        .to_string()
    }
}

impl Iterator for EventGenerator {
    /// One JSON object, without the trailing newline.
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.emitted >= self.rows {
            return None;
        }
        let line = if !self.recent.is_empty() && self.rng.next_f64() < DUPLICATE_RATE {
            // A client retry: the exact same event again.
            let i = self.rng.below(self.recent.len() as u64) as usize;
            self.recent[i].clone()
        } else {
            let e = self.fresh_event();
            if self.recent.len() == 64 {
                self.recent.remove(0);
            }
            self.recent.push(e.clone());
            e
        };
        self.emitted += 1;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn same_seed_same_events() {
        let a: Vec<String> = EventGenerator::new(2000, 7).collect();
        let b: Vec<String> = EventGenerator::new(2000, 7).collect();
        let c: Vec<String> = EventGenerator::new(2000, 8).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 2000);
    }

    #[test]
    fn shape_of_the_traffic() {
        let n = 200_000u64;
        let events: Vec<serde_json::Value> =
            EventGenerator::new(n, 42).map(|l| serde_json::from_str(&l).unwrap()).collect();
        let ids: HashSet<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
        let duplicates = n as f64 - ids.len() as f64;
        assert!((duplicates / n as f64 - DUPLICATE_RATE).abs() < 0.002, "duplicate rate {}", duplicates / n as f64);

        let late = events.iter().filter(|e| e["properties"]["late"].as_bool().unwrap()).count() as f64;
        // Duplicated late events count twice here; the rate stays near 0.5%.
        assert!((late / n as f64 - LATE_RATE).abs() < 0.0015, "late rate {}", late / n as f64);

        let types: HashSet<&str> = events.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
        assert_eq!(types.len(), 600);
        for e in &events {
            let (lat, lon) = (e["latitude"].as_f64().unwrap(), e["longitude"].as_f64().unwrap());
            assert!((US_LAT.0..=US_LAT.1).contains(&lat) && (US_LON.0..=US_LON.1).contains(&lon));
            let ts = e["timestamp"].as_i64().unwrap();
            assert!((START_MILLIS..START_MILLIS + (DAYS + 1) * DAY_MILLIS).contains(&ts));
        }
        let days: HashSet<i64> = events.iter().map(|e| (e["timestamp"].as_i64().unwrap() - START_MILLIS) / DAY_MILLIS).collect();
        assert!(days.len() >= 30, "spread over 30 days: {}", days.len());
    }

    #[test]
    fn late_events_are_days_before_their_neighbours() {
        let events: Vec<serde_json::Value> =
            EventGenerator::new(50_000, 3).map(|l| serde_json::from_str(&l).unwrap()).collect();
        let mut checked = 0;
        for w in events.windows(3) {
            if w[1]["properties"]["late"].as_bool().unwrap() && !w[0]["properties"]["late"].as_bool().unwrap() {
                let gap = w[0]["timestamp"].as_i64().unwrap() - w[1]["timestamp"].as_i64().unwrap();
                if w[0]["timestamp"].as_i64().unwrap() > START_MILLIS + 7 * DAY_MILLIS {
                    assert!(gap > DAY_MILLIS / 2, "late by only {gap} ms");
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "checked {checked}");
    }
}
