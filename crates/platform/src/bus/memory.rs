//! The in-process transport: events between the services of one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{
    Consumer, Envelope, Handler, Interest, Interests, OUTAGE_PAUSE, Sender, Transport,
    handle_observed, refusal, refused, unreachable,
};

struct Subscription {
    interests: Interests,
    sender: tokio::sync::mpsc::UnboundedSender<Envelope>,
}

/// Events between services of one process; retries then dead-letters like
/// the broker does.
pub struct InProcess {
    queues: Mutex<HashMap<String, Subscription>>,
    dead_letters: Arc<Mutex<Vec<(String, Envelope)>>>,
    max_retries: u32,
}

impl InProcess {
    pub fn new(max_retries: u32) -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            dead_letters: Arc::default(),
            max_retries,
        }
    }

    /// Events that failed every retry, by queue.
    pub fn dead_letters(&self) -> Vec<(String, Envelope)> {
        self.dead_letters
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Transport for InProcess {
    async fn publish(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let queues = self
            .queues
            .lock()
            .map_err(|_| anyhow::anyhow!("bus lock poisoned"))?;
        for subscription in queues.values() {
            if subscription.interests.wants(&envelope.kind) {
                let _ = subscription.sender.send(envelope.clone());
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        queue: &str,
        interests: &[Interest<'_>],
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Consumer> {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let interests = Interests::new(interests);
        let subscription = Subscription {
            interests: interests.clone(),
            sender,
        };
        self.queues
            .lock()
            .map_err(|_| anyhow::anyhow!("bus lock poisoned"))?
            .insert(queue.to_owned(), subscription);
        let queue = queue.to_owned();
        let dead_letters = self.dead_letters.clone();
        let max_retries = self.max_retries;
        Ok(Box::pin(async move {
            loop {
                let envelope = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = receiver.recv() => match next { Some(e) => e, None => break },
                };
                if let Some(reason) = refusal(&envelope, &interests, Sender::Process) {
                    refused(&queue, &envelope, reason);
                    continue;
                }
                let mut attempt = 0;
                while let Err(failure) = handle_observed(&queue, handler.as_ref(), &envelope).await
                {
                    // A store out of reach is waited for, not counted
                    // against the event.
                    if unreachable(&failure) {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(OUTAGE_PAUSE) => {}
                        }
                        continue;
                    }
                    attempt += 1;
                    if attempt > max_retries {
                        tracing::error!(queue = %queue, event_id = %envelope.id, "event dead-lettered");
                        super::dead_lettered(&queue);
                        if let Ok(mut dead) = dead_letters.lock() {
                            dead.push((queue.clone(), envelope.clone()));
                        }
                        break;
                    }
                    let backoff = Duration::from_millis(20 * 2u64.pow(attempt.min(6)));
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }))
    }

    async fn check(&self) -> Result<(), String> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
