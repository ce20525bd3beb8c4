//! The gateway's inbox: payments a message of the work transport announced to this worker,
//! each waiting to be leased here. A message is settled (its delivery acknowledged to the
//! broker) only once the payment needs nothing more from this worker: its lease committed,
//! or the payment is already elsewhere (leased by another worker, final, gone, or queued
//! for a later retry that the sweep will find). Until then it stays here, bounded by the
//! consumer's prefetch.

use std::collections::HashMap;
use std::sync::Mutex;

use payd_domain::CorrelationId;
use payd_domain::gateway::payment::PaymentState;
use payd_ports::{LedgerError, PaymentRecord, PaymentStore};
use tokio::sync::oneshot;

/// A message's handle: sending on it acknowledges the message; dropping it returns the
/// message to the queue.
pub type Settle = oneshot::Sender<()>;

struct Offer {
    id: CorrelationId,
    /// The payment as read, once it was (a queued, due payment).
    record: Option<PaymentRecord>,
    settle: Settle,
}

#[derive(Default)]
pub(crate) struct Inbox {
    offers: Mutex<Vec<Offer>>,
}

impl Inbox {
    pub(crate) fn push(&self, id: CorrelationId, settle: Settle) {
        crate::lock(&self.offers).push(Offer {
            id,
            record: None,
            settle,
        });
    }

    /// Takes every offer; reads the payments of those not read yet and settles at once
    /// those that need nothing from this worker. On a read error every offer is put back.
    pub(crate) async fn take(
        &self,
        store: &dyn PaymentStore,
        now_ms: i64,
    ) -> Result<Taken, LedgerError> {
        let offers = std::mem::take(&mut *crate::lock(&self.offers));
        if offers.is_empty() {
            return Ok(Taken::default());
        }
        let unread: Vec<CorrelationId> = offers
            .iter()
            .filter(|o| o.record.is_none())
            .map(|o| o.id.clone())
            .collect();
        let mut read = HashMap::new();
        if !unread.is_empty() {
            match store.payments_by_id(&unread).await {
                Ok(records) => read.extend(records.into_iter().map(|r| (r.id.clone(), r))),
                Err(error) => {
                    crate::lock(&self.offers).extend(offers);
                    return Err(error);
                }
            }
        }
        let mut taken = Taken::default();
        for offer in offers {
            let record = offer.record.or_else(|| read.remove(&offer.id));
            match record {
                Some(record) if matches!(record.state, PaymentState::Queued { due_ms } if due_ms <= now_ms) =>
                {
                    taken.offers.insert(offer.id, (record, offer.settle));
                }
                // Leased, final, not due (a retry: the sweep takes it), or unknown here.
                _ => {
                    let _ = offer.settle.send(());
                }
            }
        }
        Ok(taken)
    }

    /// Puts back what a step did not lease, read already.
    pub(crate) fn give_back(&self, taken: Taken) {
        let mut offers = crate::lock(&self.offers);
        for (id, (record, settle)) in taken.offers {
            offers.push(Offer {
                id,
                record: Some(record),
                settle,
            });
        }
    }
}

/// The offers one step works on.
#[derive(Default)]
pub(crate) struct Taken {
    offers: HashMap<CorrelationId, (PaymentRecord, Settle)>,
}

impl Taken {
    pub(crate) fn contains(&self, id: &CorrelationId) -> bool {
        self.offers.contains_key(id)
    }

    pub(crate) fn records(&self) -> Vec<PaymentRecord> {
        self.offers.values().map(|(r, _)| r.clone()).collect()
    }

    /// Acknowledges the message of `id`, if one is here: its payment is leased (or was
    /// moved by another worker meanwhile).
    pub(crate) fn settle(&mut self, id: &CorrelationId) {
        if let Some((_, settle)) = self.offers.remove(id) {
            let _ = settle.send(());
        }
    }
}
