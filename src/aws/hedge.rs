//! Hedged calls: a read or a queue call that has not answered after a
//! short delay gets a second, identical request beside it, and the first
//! answer wins.
//!
//! On a network that drops replies, a stalled read costs a whole attempt
//! timeout before the SDK retries it, and the message waits the whole
//! time; a stalled heartbeat eats into the message's visibility. A read
//! changes nothing, and a heartbeat, delete or release sent twice does
//! what one does, so asking twice is harmless: the hedge turns a stall
//! into the hedge delay plus one round trip (`[aws] hedge_after`). A
//! change or a dead-letter send is never sent twice this way, and a
//! receive would take more messages.
//!
//! One hedge per call at most, so a call costs at most two requests (each
//! with the SDK's own retries, which its token bucket still bounds), and
//! the call's operation deadline bounds both.

use std::future::Future;
use std::time::Duration;

/// Whether a hedged call sent its second request, for the caller to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hedge {
    /// The first request answered within the delay.
    NotSent,
    /// The second request was sent; `won` when its answer was the one used.
    Sent { won: bool },
}

/// Runs `request()`; when it has not finished after `after`, runs
/// `request()` again beside it. The first success wins (the other request
/// is dropped); when one fails, the other's outcome is awaited, so the
/// call fails only when both do (with the later error). `after` `None`:
/// the one request, never hedged.
pub async fn hedged<T, E, F>(
    after: Option<Duration>,
    request: impl Fn() -> F,
) -> (Result<T, E>, Hedge)
where
    F: Future<Output = Result<T, E>>,
{
    let Some(after) = after else {
        return (request().await, Hedge::NotSent);
    };
    let first = request();
    tokio::pin!(first);
    tokio::select! {
        biased;
        result = &mut first => return (result, Hedge::NotSent),
        () = tokio::time::sleep(after) => {}
    }
    let second = request();
    tokio::pin!(second);
    tokio::select! {
        biased;
        result = &mut first => match result {
            Ok(v) => (Ok(v), Hedge::Sent { won: false }),
            Err(_) => (second.await, Hedge::Sent { won: true }),
        },
        result = &mut second => match result {
            Ok(v) => (Ok(v), Hedge::Sent { won: true }),
            Err(_) => (first.await, Hedge::Sent { won: false }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::time::Instant;

    const AFTER: Duration = Duration::from_millis(500);

    /// A request that answers `outcome` after `delay`, counting requests.
    async fn reply(
        count: &AtomicU32,
        plan: &[(u64, Result<u32, &'static str>)],
    ) -> Result<u32, &'static str> {
        let n = count.fetch_add(1, Ordering::SeqCst) as usize;
        let (ms, outcome) = plan[n.min(plan.len() - 1)];
        tokio::time::sleep(Duration::from_millis(ms)).await;
        outcome
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_answer_sends_no_hedge() {
        let count = AtomicU32::new(0);
        let (r, hedge) = hedged(Some(AFTER), || reply(&count, &[(100, Ok(1))])).await;
        assert_eq!((r, hedge), (Ok(1), Hedge::NotSent));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_is_overtaken_by_its_hedge() {
        let count = AtomicU32::new(0);
        let started = Instant::now();
        let plan = [(60_000, Ok(1)), (100, Ok(2))];
        let (r, hedge) = hedged(Some(AFTER), || reply(&count, &plan)).await;
        assert_eq!((r, hedge), (Ok(2), Hedge::Sent { won: true }));
        assert_eq!(started.elapsed(), AFTER + Duration::from_millis(100));
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_first_answer_still_wins_when_it_comes_first() {
        let count = AtomicU32::new(0);
        let plan = [(700, Ok(1)), (60_000, Ok(2))];
        let (r, hedge) = hedged(Some(AFTER), || reply(&count, &plan)).await;
        assert_eq!((r, hedge), (Ok(1), Hedge::Sent { won: false }));
    }

    /// A failure of one request is not the call's answer while the other
    /// may still succeed; both failing is.
    #[tokio::test(start_paused = true)]
    async fn the_call_fails_only_when_both_requests_fail() {
        let count = AtomicU32::new(0);
        let plan = [(800, Err("first")), (1_000, Ok(2))];
        let (r, _) = hedged(Some(AFTER), || reply(&count, &plan)).await;
        assert_eq!(r, Ok(2));

        let count = AtomicU32::new(0);
        let plan = [(2_000, Ok(1)), (100, Err("hedge"))];
        let (r, hedge) = hedged(Some(AFTER), || reply(&count, &plan)).await;
        assert_eq!((r, hedge), (Ok(1), Hedge::Sent { won: false }));

        let count = AtomicU32::new(0);
        let plan = [(800, Err("first")), (1_000, Err("hedge"))];
        let (r, _) = hedged(Some(AFTER), || reply(&count, &plan)).await;
        assert_eq!(r, Err("hedge"));
        assert_eq!(count.load(Ordering::SeqCst), 2, "one hedge at most");
    }
}
