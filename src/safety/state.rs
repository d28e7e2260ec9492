//! Limiter state — dedup claims, cooldowns and rate limits — behind one
//! small trait, so a durable or shared store can replace the in-memory one.
//! Rate limits use `governor`; the clock is injectable so tests are
//! deterministic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::rules::Rate;

/// What a dedup claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody has handled this key: it is now ours.
    New,
    /// Another worker is handling it right now.
    InProgress,
    /// It was handled within the dedup window.
    Done,
}

/// A rate limit that said no.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimited {
    pub rate: Rate,
    pub requested: u32,
    /// When the request could next succeed, if ever (`None`: it asks for
    /// more than the whole burst).
    pub retry_after: Option<Duration>,
}

/// Dedup, cooldown and rate-limit state.
pub trait StateStore: Send + Sync {
    /// Claims `key` for processing.
    fn claim(&self, key: &str) -> Claim;
    /// Ends a claim: `done` remembers the key for the dedup window; otherwise
    /// the key is released so a retry can claim it.
    fn finish(&self, key: &str, done: bool);
    /// Time left on the cooldown of (rule, target), if any.
    fn cooldown_remaining(&self, rule: &str, target: &str) -> Option<Duration>;
    fn start_cooldown(&self, rule: &str, target: &str, period: Duration);
    /// Takes `n` cells from the bucket limited to `rate`.
    fn take(&self, bucket: &str, rate: Rate, n: u32) -> Result<(), RateLimited>;
}

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

enum ClaimState<I> {
    InProgress,
    Done(I),
}

struct Inner<C: Clock> {
    claims: HashMap<String, ClaimState<C::Instant>>,
    cooldowns: HashMap<(String, String), C::Instant>,
    limiters: HashMap<(String, Rate), Limiter<C>>,
    claims_since_prune: u32,
}

/// The in-memory store: state lives as long as the process.
pub struct MemoryStore<C: Clock = DefaultClock> {
    clock: C,
    dedup_window: Duration,
    inner: Mutex<Inner<C>>,
}

impl MemoryStore<DefaultClock> {
    pub fn new(dedup_window: Duration) -> Self {
        MemoryStore::with_clock(dedup_window, DefaultClock::default())
    }
}

impl<C: Clock> MemoryStore<C> {
    pub fn with_clock(dedup_window: Duration, clock: C) -> Self {
        MemoryStore {
            clock,
            dedup_window,
            inner: Mutex::new(Inner {
                claims: HashMap::new(),
                cooldowns: HashMap::new(),
                limiters: HashMap::new(),
                claims_since_prune: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<C>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<C> StateStore for MemoryStore<C>
where
    C: Clock + Send + Sync,
    C::Instant: Send + Sync,
{
    fn claim(&self, key: &str) -> Claim {
        let window = self.dedup_window;
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.claims_since_prune += 1;
        if inner.claims_since_prune >= 1024 {
            inner.claims_since_prune = 0;
            inner.claims.retain(|_, s| match s {
                ClaimState::InProgress => true,
                ClaimState::Done(at) => Duration::from(now.duration_since(*at)) < window,
            });
        }
        match inner.claims.get(key) {
            Some(ClaimState::InProgress) => Claim::InProgress,
            Some(ClaimState::Done(at)) if Duration::from(now.duration_since(*at)) < window => {
                Claim::Done
            }
            _ => {
                inner.claims.insert(key.to_string(), ClaimState::InProgress);
                Claim::New
            }
        }
    }

    fn finish(&self, key: &str, done: bool) {
        let now = self.clock.now();
        let mut inner = self.lock();
        if done {
            inner.claims.insert(key.to_string(), ClaimState::Done(now));
        } else {
            inner.claims.remove(key);
        }
    }

    fn cooldown_remaining(&self, rule: &str, target: &str) -> Option<Duration> {
        let inner = self.lock();
        let until = inner
            .cooldowns
            .get(&(rule.to_string(), target.to_string()))?;
        let now = self.clock.now();
        (now < *until).then(|| Duration::from(until.duration_since(now)))
    }

    fn start_cooldown(&self, rule: &str, target: &str, period: Duration) {
        let until = self.clock.now() + period.into();
        self.lock()
            .cooldowns
            .insert((rule.to_string(), target.to_string()), until);
    }

    fn take(&self, bucket: &str, rate: Rate, n: u32) -> Result<(), RateLimited> {
        let limited = |retry_after| RateLimited {
            rate,
            requested: n,
            retry_after,
        };
        let Some(n) = std::num::NonZeroU32::new(n) else {
            return Ok(());
        };
        let mut inner = self.lock();
        let limiter = inner
            .limiters
            .entry((bucket.to_string(), rate))
            .or_insert_with(|| {
                let per_cell = rate.per / rate.count.get();
                let quota = Quota::with_period(per_cell.max(Duration::from_nanos(1)))
                    .unwrap_or_else(|| Quota::per_hour(rate.count))
                    .allow_burst(rate.count);
                RateLimiter::direct_with_clock(quota, &self.clock)
            });
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(limited(Some(not_until.wait_time_from(self.clock.now())))),
            Err(_) => Err(limited(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn store() -> (MemoryStore<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            MemoryStore::with_clock(Duration::from_secs(3600), clock.clone()),
            clock,
        )
    }

    #[test]
    fn claims_dedup_within_the_window_and_release_on_failure() {
        let (s, clock) = store();
        assert_eq!(s.claim("k"), Claim::New);
        assert_eq!(s.claim("k"), Claim::InProgress);
        s.finish("k", false);
        assert_eq!(s.claim("k"), Claim::New, "a failed attempt can be retried");
        s.finish("k", true);
        assert_eq!(s.claim("k"), Claim::Done);
        clock.advance(Duration::from_secs(3601));
        assert_eq!(s.claim("k"), Claim::New, "the window expired");
    }

    #[test]
    fn cooldowns_expire() {
        let (s, clock) = store();
        assert_eq!(s.cooldown_remaining("r", "elb:web"), None);
        s.start_cooldown("r", "elb:web", Duration::from_secs(600));
        assert_eq!(
            s.cooldown_remaining("r", "elb:web"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(s.cooldown_remaining("r", "elb:api"), None, "per target");
        clock.advance(Duration::from_secs(601));
        assert_eq!(s.cooldown_remaining("r", "elb:web"), None);
    }

    #[test]
    fn rates_stop_the_sixth_call_in_an_hour() {
        let (s, clock) = store();
        let rate = Rate::parse("5/hour").unwrap();
        for i in 0..5 {
            assert!(s.take("rule:a", rate, 1).is_ok(), "call {i}");
        }
        let err = s.take("rule:a", rate, 1).unwrap_err();
        assert!(err
            .retry_after
            .is_some_and(|d| d <= Duration::from_secs(720)));
        assert!(s.take("rule:b", rate, 1).is_ok(), "buckets are separate");
        clock.advance(Duration::from_secs(720));
        assert!(s.take("rule:a", rate, 1).is_ok(), "a cell came back");
        assert_eq!(
            s.take("global", rate, 6).unwrap_err().retry_after,
            None,
            "more than the burst"
        );
    }
}
