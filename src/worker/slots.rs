//! In-flight slots: how many messages one receive may ask for.
//!
//! Each message in flight holds a slot (`receive.max_in_flight` in all),
//! released once it is deleted or released. A poller that asked for only
//! the slots free at the instant it woke would, while a queue drains,
//! wake on the first slot its last batch released, before the others of
//! that batch were back, and ask SQS for one or two messages at a time:
//! about two receives and two deletes per ten messages, where ten need one
//! of each.
//!
//! So while the queue has a backlog (the poller's last receive came back
//! full), a poller that holds fewer slots than one receive can fill waits
//! for the messages still in flight while they keep finishing: for as
//! long as another slot comes back within [`GATHER`] of the last, at most
//! [`GATHER_MAX`] in all. Otherwise it asks at once for what is free: an
//! alarm on a quiet queue is never held back for slots.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Most messages one `ReceiveMessage` returns.
pub const PER_RECEIVE: usize = 10;

/// How long a poller draining a backlog waits for the next slot: a few
/// times the gap between two delete batches (the batch's linger and its
/// call).
pub const GATHER: Duration = Duration::from_millis(25);

/// The longest a receive is held back while slots keep coming back.
pub const GATHER_MAX: Duration = Duration::from_millis(100);

/// How a poller takes its slots: with `backlog` (its last receive came
/// back full), waiting for slots as [`fill`] does; otherwise only those
/// free now.
pub fn gather(backlog: bool) -> (Duration, Duration) {
    if backlog {
        (GATHER, GATHER_MAX)
    } else {
        (Duration::ZERO, Duration::ZERO)
    }
}

/// The slots for one receive: `first`, every slot free now, and then
/// each that comes free within `gap` of the one before, for at most
/// `max`, up to `want` (at most [`PER_RECEIVE`]). Returns once it holds
/// `want`.
pub async fn fill(
    permits: &Arc<Semaphore>,
    first: OwnedSemaphorePermit,
    want: usize,
    (gap, max): (Duration, Duration),
) -> Vec<OwnedSemaphorePermit> {
    let want = want.clamp(1, PER_RECEIVE);
    let mut slots = vec![first];
    let last = tokio::time::Instant::now() + max;
    while slots.len() < want {
        match Arc::clone(permits).try_acquire_owned() {
            Ok(slot) => {
                slots.push(slot);
                continue;
            }
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {}
        }
        let deadline = (tokio::time::Instant::now() + gap).min(last);
        match tokio::time::timeout_at(deadline, Arc::clone(permits).acquire_owned()).await {
            Ok(Ok(slot)) => slots.push(slot),
            // Closed, or none came free in time.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn first(permits: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        Arc::clone(permits)
            .acquire_owned()
            .await
            .expect("the semaphore is open")
    }

    #[tokio::test(start_paused = true)]
    async fn every_free_slot_is_taken_at_once_up_to_one_receive() {
        let permits = Arc::new(Semaphore::new(30));
        let started = tokio::time::Instant::now();
        let slot = first(&permits).await;
        let slots = fill(&permits, slot, 30, gather(true)).await;
        assert_eq!(slots.len(), PER_RECEIVE, "one receive returns at most 10");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no wait when they are free"
        );
        assert_eq!(permits.available_permits(), 20);
    }

    /// Takes every slot of `permits`, as messages in flight, and gives one
    /// back every `every`.
    async fn release_one_every(
        permits: &Arc<Semaphore>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let mut in_flight: Vec<_> = Vec::new();
        while permits.available_permits() > 0 {
            in_flight.push(first(permits).await);
        }
        tokio::spawn(async move {
            for slot in in_flight {
                tokio::time::sleep(every).await;
                drop(slot);
            }
        })
    }

    /// A draining queue: the last receive's ten messages finish a few
    /// milliseconds apart. The poller wakes on the first, and asks for all
    /// ten once they are back, not for the one it woke on.
    #[tokio::test(start_paused = true)]
    async fn slots_that_come_free_within_the_gather_time_join_the_receive() {
        let permits = Arc::new(Semaphore::new(10));
        let releaser = release_one_every(&permits, Duration::from_millis(1)).await;
        let started = tokio::time::Instant::now();
        let slot = first(&permits).await;
        let woke = started.elapsed();
        let slots = fill(&permits, slot, 10, gather(true)).await;
        assert_eq!(woke, Duration::from_millis(1));
        assert_eq!(slots.len(), 10, "the whole batch, not the first slot back");
        assert_eq!(started.elapsed(), Duration::from_millis(10));
        releaser.await.expect("the releaser finishes");
    }

    /// Slots that come back in waves (one delete batch after another)
    /// keep the receive waiting while each comes within `GATHER` of the
    /// last, but not past `GATHER_MAX`.
    #[tokio::test(start_paused = true)]
    async fn waves_of_slots_are_waited_for_up_to_the_longest_wait() {
        // Slots back every 8 ms: woke at 8, the others back at 16 ... 80
        // joined. Every 24 ms: woke at 24, those back at 48, 72, 96 and
        // 120 joined, and the receive went at 124, 100 ms after it woke.
        for (every, taken, went) in [(8, 10, 80), (24, 5, 24 + GATHER_MAX.as_millis() as u64)] {
            let permits = Arc::new(Semaphore::new(10));
            let releaser = release_one_every(&permits, Duration::from_millis(every)).await;
            let started = tokio::time::Instant::now();
            let slot = first(&permits).await;
            let slots = fill(&permits, slot, 10, gather(true)).await;
            assert_eq!(slots.len(), taken, "every {every} ms");
            assert_eq!(
                started.elapsed(),
                Duration::from_millis(went),
                "every {every} ms"
            );
            drop(slots);
            releaser.await.expect("the releaser finishes");
        }
    }

    /// Messages that stay in flight (a long action): with a backlog, the
    /// receive waits `GATHER` for them and then asks for what it has; on a
    /// quiet queue (the last receive was not full) it asks at once.
    #[tokio::test(start_paused = true)]
    async fn slots_held_by_a_long_action_cost_at_most_the_gather_time() {
        for (backlog, waited) in [(true, GATHER), (false, Duration::ZERO)] {
            let permits = Arc::new(Semaphore::new(10));
            let busy = Arc::clone(&permits)
                .acquire_many_owned(9)
                .await
                .expect("the semaphore is open");
            let started = tokio::time::Instant::now();
            let slot = first(&permits).await;
            let slots = fill(&permits, slot, 10, gather(backlog)).await;
            assert_eq!(slots.len(), 1, "backlog {backlog}");
            assert_eq!(started.elapsed(), waited, "backlog {backlog}");
            drop(busy);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_poller_limited_to_fewer_slots_asks_for_no_more() {
        let permits = Arc::new(Semaphore::new(3));
        let slot = first(&permits).await;
        let slots = fill(&permits, slot, 3, gather(true)).await;
        assert_eq!(slots.len(), 3);
        let started = tokio::time::Instant::now();
        drop(slots);
        let slot = first(&permits).await;
        let slots = fill(&permits, slot, 2, gather(true)).await;
        assert_eq!(slots.len(), 2);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
