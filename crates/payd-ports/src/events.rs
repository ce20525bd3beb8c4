//! The payloads of outbox events, typed and defined once.
//!
//! The command layer builds them in the same commit as the change they announce; stores
//! keep them as JSON text ([`EventView::payload`](crate::EventView)); the API and the
//! webhook deliverer send that text unchanged as the event's `data`. So this file is the
//! whole definition of what a subscriber receives.
//!
//! Representation: the same as the API's resources. Field names are camelCase; amounts are
//! JSON numbers with exactly two decimals ([`Money`]: `12.50`, never `12.5` and never a
//! string), exact to the cent; instants are ISO-8601 UTC with milliseconds; absent values
//! are `null`. (Events written before this representation, by payd 0.1 builds of November
//! 2026, carry amounts as decimal strings; the outbox is immutable, so those stay as they
//! were written.)

use payd_domain::gateway::Processor;
use payd_domain::{Amount, CorrelationId, ResourceId, TransferStatus};
use serde::{Serialize, Serializer};

use crate::{HoldView, TransferView};

/// An amount as a JSON number with exactly two decimals (`100.00`, `-12.05`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money(pub Amount);

impl Serialize for Money {
    /// Through `RawValue` because serde_json prints floats in shortest form (`100.0`), and
    /// an amount never passes through a float.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let raw = serde_json::value::RawValue::from_string(self.0.to_string())
            .map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// `payment.succeeded`, `payment.failed`, `payment.unknown`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentEvent {
    /// The payment.
    pub correlation_id: String,
    /// Its amount.
    pub amount: Money,
    /// `succeeded`, `failed` or `unknown`.
    pub status: &'static str,
    /// The processor that booked it, or that it is bound to while unknown.
    pub processor: Option<&'static str>,
    /// For a pay-in, the hold that reserves (or reserved) its amount.
    pub hold: Option<String>,
}

impl PaymentEvent {
    /// The event of a payment that reached `status` at `processor`.
    pub fn new(
        id: &CorrelationId,
        amount: Amount,
        status: &'static str,
        processor: Option<Processor>,
        hold: Option<&ResourceId>,
    ) -> PaymentEvent {
        PaymentEvent {
            correlation_id: id.as_str().to_owned(),
            amount: Money(amount),
            status,
            processor: processor.map(Processor::as_str),
            hold: hold.map(|hold| hold.as_str().to_owned()),
        }
    }
}

/// `transfer.completed`, `transfer.rejected`: the transfer as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferEvent {
    /// The transfer.
    pub id: String,
    /// The account debited.
    pub from: String,
    /// The account credited.
    pub to: String,
    /// The category moved.
    pub category: &'static str,
    /// The amount.
    pub amount: Money,
    /// The client's description.
    pub description: Option<String>,
    /// `completed` or `rejected`.
    pub status: &'static str,
    /// Why it was rejected.
    pub reason: Option<&'static str>,
}

impl TransferEvent {
    /// The event of a transfer as it now stands.
    pub fn of(view: &TransferView) -> TransferEvent {
        let transfer = &view.transfer;
        TransferEvent {
            id: transfer.id.as_str().to_owned(),
            from: transfer.from.as_str().to_owned(),
            to: transfer.to.as_str().to_owned(),
            category: transfer.category.as_str(),
            amount: Money(transfer.amount),
            description: view.description.clone(),
            status: view.status.as_str(),
            reason: match view.status {
                TransferStatus::Rejected(reason) => Some(reason.as_str()),
                TransferStatus::Pending | TransferStatus::Completed => None,
            },
        }
    }
}

/// `hold.captured`, `hold.voided`, `hold.expired`: the hold as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldEvent {
    /// The hold.
    pub id: String,
    /// Its account.
    pub account: String,
    /// The category held.
    pub category: &'static str,
    /// The amount held.
    pub amount: Money,
    /// How much of it was captured (0.00 unless captured).
    pub captured: Money,
    /// `captured`, `voided` or `expired`.
    pub status: &'static str,
    /// When it expires (or expired); `null` for a pay-in's hold.
    pub expires_at: Option<String>,
    /// The pay-in it backs.
    pub payment: Option<String>,
}

impl HoldEvent {
    /// The event of a hold as it now stands.
    pub fn of(view: &HoldView) -> HoldEvent {
        let hold = &view.hold;
        HoldEvent {
            id: hold.id.as_str().to_owned(),
            account: hold.account.as_str().to_owned(),
            category: hold.category.as_str(),
            amount: Money(hold.amount),
            captured: Money(hold.captured),
            status: hold.status.as_str(),
            expires_at: hold.expires_at_ms.map(payd_domain::timestamp::format_ms),
            payment: view.payment.as_ref().map(|id| id.as_str().to_owned()),
        }
    }
}

/// Any event's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EventPayload {
    /// A payment's.
    Payment(PaymentEvent),
    /// A transfer's.
    Transfer(TransferEvent),
    /// A hold's.
    Hold(HoldEvent),
}

impl EventPayload {
    /// The JSON text stores keep.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and numbers: serializing them cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use payd_domain::{AccountId, Category, Hold, HoldStatus, RejectReason, Transfer};

    use super::*;

    fn json(payload: &EventPayload) -> serde_json::Value {
        serde_json::from_str(&payload.to_json()).unwrap()
    }

    #[test]
    fn amounts_are_numbers_with_two_decimals() {
        let id = CorrelationId::parse("00000000-0000-4000-8000-000000000001").unwrap();
        let payload = EventPayload::Payment(PaymentEvent::new(
            &id,
            Amount::from_cents(1250),
            "succeeded",
            Some(Processor::Default),
            None,
        ));
        assert_eq!(
            payload.to_json(),
            r#"{"correlationId":"00000000-0000-4000-8000-000000000001","amount":12.50,"status":"succeeded","processor":"default","hold":null}"#
        );
    }

    #[test]
    fn transfers_and_holds_read_like_the_api() {
        let account = |text: &str| AccountId::parse(text).unwrap();
        let rid = |text: &str| ResourceId::parse(text).unwrap();
        let transfer = TransferView {
            transfer: Transfer {
                id: rid("tr-1"),
                from: account("a"),
                to: account("b"),
                category: Category::Cash,
                amount: Amount::from_cents(9901),
            },
            description: Some("rent".to_owned()),
            status: TransferStatus::Rejected(RejectReason::InsufficientFunds),
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        let payload = EventPayload::Transfer(TransferEvent::of(&transfer));
        assert!(payload.to_json().contains(r#""amount":99.01,"#));
        let value = json(&payload);
        assert_eq!(value["status"], "rejected");
        assert_eq!(value["reason"], "insufficient_funds");
        let hold = HoldView {
            hold: Hold {
                id: rid("h-1"),
                account: account("a"),
                category: Category::Food,
                amount: Amount::from_cents(4000),
                captured: Amount::from_cents(1500),
                status: HoldStatus::Captured,
                expires_at_ms: Some(0),
            },
            payment: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        let payload = EventPayload::Hold(HoldEvent::of(&hold));
        assert!(
            payload
                .to_json()
                .contains(r#""amount":40.00,"captured":15.00,"#)
        );
        let value = json(&payload);
        assert_eq!(value["expiresAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(value["payment"], serde_json::Value::Null);
    }
}
