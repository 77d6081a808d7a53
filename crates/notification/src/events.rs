//! The events notification acts on; it publishes none.
//!
//! Each event acts once, through the inbox: its messages are recorded in
//! the transaction that claims it, and sent afterwards by the dispatcher,
//! so a crash between the two loses nothing and a second delivery finds
//! the claim and does nothing. Who a user is comes from identity
//! (`GetUser`) before the claim; when identity cannot answer, the event is
//! handed back to the broker and comes again.

use async_trait::async_trait;
use emporium_platform::bus::{self, Envelope, Handler};

use crate::dispatch::Dispatcher;
use crate::domain::{Audience, Composer, Directory, Resolved, audience, is_pushed, socket_message};
use crate::live::Hub;
use crate::store::Store;

/// The durable queue notification consumes from.
pub const QUEUE: &str = "notification";
pub const CONSUMES: &[bus::Interest<'static>] = &[
    bus::Interest::new("user.registered", "emporium.identity"),
    bus::Interest::new("order.*", "emporium.ordering"),
    bus::Interest::new("payment.*", "emporium.payment"),
    bus::Interest::new("stock.low", "emporium.inventory"),
];

pub struct Consumer {
    pub store: Store,
    pub directory: Directory,
    pub composer: Composer,
    pub dispatcher: Dispatcher,
    pub hub: Hub,
}

#[async_trait]
impl Handler for Consumer {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let kind = envelope.kind.as_str();
        let who = audience(envelope);
        let resolved = match &who {
            Audience::User(user_id) => match self.directory.lookup(user_id).await? {
                Some(user) => Resolved::User(user),
                None => {
                    tracing::info!(event_id = %envelope.id, kind, "no such user at identity; nothing to send");
                    Resolved::Nobody
                }
            },
            Audience::Described(user) => Resolved::User(user.clone()),
            Audience::Staff => Resolved::Staff,
            Audience::Nobody => Resolved::Nobody,
        };
        let drafts = self.composer.compose(envelope, &resolved);
        let Some(txn) = bus::claim(self.store.db(), QUEUE, envelope).await? else {
            return Ok(());
        };
        for draft in &drafts {
            Store::insert(&txn, draft).await?;
        }
        txn.commit().await?;
        for draft in drafts.iter().filter(|d| d.error.is_some()) {
            metrics::counter!("notifications_sent_total", "type" => draft.kind.clone(), "status" => "failed")
                .increment(1);
        }
        if !drafts.is_empty() {
            self.dispatcher.wake();
        }
        if is_pushed(kind)
            && let Audience::User(user_id) = &who
        {
            self.hub.push(user_id, &socket_message(envelope)).await;
        }
        Ok(())
    }
}
