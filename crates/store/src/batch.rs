//! Group commit: callers queue their writes, and whichever caller takes the flush lock writes
//! everything queued in one round (one transaction, one statement, …), then hands each caller
//! its own result. Under load the round trips to the database are shared; a lone caller is
//! written at once.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Waiting<T, R> = Vec<(T, oneshot::Sender<R>)>;

pub struct GroupCommit<T, R> {
    queue: Arc<Mutex<Waiting<T, R>>>,
    flushing: Arc<tokio::sync::Mutex<()>>,
    max: usize,
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// At most `max` items per round.
    pub fn new(max: usize) -> GroupCommit<T, R> {
        GroupCommit { queue: Arc::default(), flushing: Arc::default(), max: max.max(1) }
    }

    /// Queues `item` and waits for its result. `flush` writes a round of items and returns one
    /// result per item, in order; it runs in a task of its own, so a caller that goes away (a
    /// client that hung up) cannot cut a round short: every item of a round started is answered
    /// exactly as written. `None`: the round failed without an answer (its task panicked).
    pub async fn submit<F, Fut>(&self, item: T, flush: F) -> Option<R>
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (tx, mut rx) = oneshot::channel();
        self.queue.lock().expect("group commit queue").push((item, tx));
        let flush = Arc::new(flush);
        loop {
            let guard = tokio::select! {
                biased;
                done = &mut rx => return done.ok(),
                guard = self.flushing.clone().lock_owned() => guard,
            };
            // The previous round may have carried ours.
            match rx.try_recv() {
                Ok(done) => return Some(done),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let round: Waiting<T, R> = {
                let mut queue = self.queue.lock().expect("group commit queue");
                let n = queue.len().min(self.max);
                queue.drain(..n).collect()
            };
            let flush = flush.clone();
            let task = tokio::spawn(async move {
                let (items, waiters): (Vec<T>, Vec<_>) = round.into_iter().unzip();
                let results = flush(items).await;
                for (waiter, result) in waiters.into_iter().zip(results) {
                    let _ = waiter.send(result);
                }
                drop(guard);
            });
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_item_gets_its_own_result_and_rounds_are_shared() {
        let batcher = Arc::new(GroupCommit::<u32, u32>::new(16));
        let rounds = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let (batcher, rounds) = (batcher.clone(), rounds.clone());
            tasks.push(tokio::spawn(async move {
                let got = batcher
                    .submit(i, move |items: Vec<u32>| {
                        let rounds = rounds.clone();
                        async move {
                            assert!(items.len() <= 16);
                            rounds.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            items.into_iter().map(|x| x * 10).collect()
                        }
                    })
                    .await;
                assert_eq!(got, Some(i * 10));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rounds = rounds.load(Ordering::SeqCst);
        assert!(rounds < 200, "items shared rounds: {rounds} rounds for 200 items");
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_does_not_cut_its_round_short() {
        let batcher = Arc::new(GroupCommit::<u32, u32>::new(16));
        let written = Arc::new(AtomicUsize::new(0));
        let flush = {
            let written = written.clone();
            move |items: Vec<u32>| {
                let written = written.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    written.fetch_add(items.len(), Ordering::SeqCst);
                    items
                }
            }
        };
        // The leader is dropped while its round runs.
        let leader = tokio::time::timeout(Duration::from_millis(10), batcher.submit(1, flush.clone())).await;
        assert!(leader.is_err());
        // The round still completes, and the next caller is served after it.
        assert_eq!(batcher.submit(2, flush).await, Some(2));
        assert_eq!(written.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_round_that_panics_answers_none() {
        let batcher = GroupCommit::<u32, u32>::new(4);
        let got = batcher.submit(1, |_items: Vec<u32>| async move { panic!("flush failed") }).await;
        assert_eq!(got, None);
        assert_eq!(batcher.submit(2, |items: Vec<u32>| async move { items }).await, Some(2));
    }
}
