//! Retrying with exponential backoff: the one way every retry loop of the platform waits
//! (the sink's store writes and polls, the fleet's posts, the Kafka topic set-up).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Doubling waits between attempts: `first`, then twice the last, never more than `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            next: first,
            max,
        }
    }

    /// The wait before the next attempt; the one after is twice as long.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Back to the first wait, after an attempt succeeded.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps the next wait; false if `shutdown` came first.
    pub async fn pause(&mut self, shutdown: &CancellationToken) -> bool {
        sleep_unless(shutdown, self.next_wait()).await
    }
}

/// Sleeps `wait`; false if `shutdown` came first.
pub async fn sleep_unless(shutdown: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let waits: Vec<u128> = (0..5).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_pause_ends_early_on_shutdown() {
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!b.pause(&stop).await);
    }
}
