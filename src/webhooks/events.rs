//! The events shopd understands, parsed from a verified body into one form whatever the scheme.

use serde::Deserialize;

/// What a provider says happened to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Succeeded,
    Failed,
    Refunded,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
        }
    }
}

/// A payment event, verified and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    /// The provider's event id: the unit of exactly-once.
    pub event_id: String,
    pub kind: Kind,
    pub payment_id: String,
    pub order_id: Option<String>,
    /// Minor units, as the provider reports them.
    pub amount: i64,
    /// Upper case ISO 4217.
    pub currency: String,
}

/// What a verified body turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Payment(PaymentEvent),
    /// A well-formed event of a type shopd does not act on.
    Ignored {
        event_id: String,
        event_type: String,
    },
}

/// A body that is not the event it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadEvent(pub String);

fn bad(what: impl Into<String>) -> BadEvent {
    BadEvent(what.into())
}

#[derive(Deserialize)]
struct StandardEvent {
    #[serde(rename = "type")]
    kind: String,
    data: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StandardPayment {
    payment_id: String,
    order_id: String,
    amount: i64,
    currency: String,
}

/// A Standard Webhooks event (`payment.succeeded|failed|refunded`); its id is the `webhook-id` header.
pub fn parse_standard(webhook_id: &str, body: &[u8]) -> Result<Parsed, BadEvent> {
    let event: StandardEvent =
        serde_json::from_slice(body).map_err(|e| bad(format!("not an event: {e}")))?;
    let kind = match event.kind.as_str() {
        "payment.succeeded" => Kind::Succeeded,
        "payment.failed" => Kind::Failed,
        "payment.refunded" => Kind::Refunded,
        other => {
            return Ok(Parsed::Ignored {
                event_id: webhook_id.to_owned(),
                event_type: short(other),
            });
        }
    };
    let data: StandardPayment = serde_json::from_value(event.data)
        .map_err(|e| bad(format!("`data` is not a payment: {e}")))?;
    Ok(Parsed::Payment(PaymentEvent {
        event_id: webhook_id.to_owned(),
        kind,
        payment_id: data.payment_id,
        order_id: Some(data.order_id),
        amount: data.amount,
        currency: currency(&data.currency)?,
    }))
}

#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: StripeData,
}

#[derive(Deserialize)]
struct StripeData {
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct StripeIntent {
    id: String,
    amount: i64,
    currency: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct StripeCharge {
    payment_intent: String,
    amount_refunded: i64,
    currency: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, serde_json::Value>,
}

fn order_id_of(metadata: &std::collections::HashMap<String, serde_json::Value>) -> Option<String> {
    metadata
        .get("order_id")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// A Stripe event (`payment_intent.succeeded`, `payment_intent.payment_failed`, `charge.refunded`).
pub fn parse_stripe(body: &[u8]) -> Result<Parsed, BadEvent> {
    let event: StripeEvent =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a Stripe event: {e}")))?;
    if !event.id.starts_with("evt_") {
        return Err(bad("a Stripe event id starts with evt_"));
    }
    let object = event.data.object;
    let parsed = match event.kind.as_str() {
        "payment_intent.succeeded" | "payment_intent.payment_failed" => {
            let intent: StripeIntent = serde_json::from_value(object)
                .map_err(|e| bad(format!("not a PaymentIntent: {e}")))?;
            let kind = if event.kind.ends_with("succeeded") {
                Kind::Succeeded
            } else {
                Kind::Failed
            };
            PaymentEvent {
                event_id: event.id,
                kind,
                order_id: order_id_of(&intent.metadata),
                payment_id: intent.id,
                amount: intent.amount,
                currency: currency(&intent.currency)?,
            }
        }
        "charge.refunded" => {
            let charge: StripeCharge =
                serde_json::from_value(object).map_err(|e| bad(format!("not a Charge: {e}")))?;
            PaymentEvent {
                event_id: event.id,
                kind: Kind::Refunded,
                order_id: order_id_of(&charge.metadata),
                payment_id: charge.payment_intent,
                amount: charge.amount_refunded,
                currency: currency(&charge.currency)?,
            }
        }
        other => {
            return Ok(Parsed::Ignored {
                event_id: event.id,
                event_type: short(other),
            });
        }
    };
    Ok(Parsed::Payment(parsed))
}

fn currency(text: &str) -> Result<String, BadEvent> {
    if text.len() == 3 && text.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(text.to_ascii_uppercase())
    } else {
        Err(bad("`currency` is not an ISO 4217 code"))
    }
}

/// Event types are logged and stored: keep them short and printable.
fn short(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_events() {
        let body = br#"{"type":"payment.succeeded","data":{"payment_id":"sbx_1","order_id":"o1","amount":1250,"currency":"eur"}}"#;
        let Parsed::Payment(e) = parse_standard("msg_1", body).unwrap() else {
            panic!()
        };
        assert_eq!(
            (e.kind, e.amount, e.currency.as_str()),
            (Kind::Succeeded, 1250, "EUR")
        );
        assert!(matches!(
            parse_standard("msg_2", br#"{"type":"payment.disputed","data":{}}"#),
            Ok(Parsed::Ignored { .. })
        ));
        for body in [
            &b"not json"[..],
            br#"{"type":"payment.failed"}"#,
            br#"{"type":"payment.failed","data":{"payment_id":"x"}}"#,
        ] {
            assert!(parse_standard("msg_3", body).is_err());
        }
    }

    #[test]
    fn stripe_events() {
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","amount":500,"currency":"eur","metadata":{"order_id":"o1"}}}}"#;
        let Parsed::Payment(e) = parse_stripe(body).unwrap() else {
            panic!()
        };
        assert_eq!(
            (e.payment_id.as_str(), e.order_id.as_deref()),
            ("pi_1", Some("o1"))
        );
        let refund = br#"{"id":"evt_2","type":"charge.refunded","data":{"object":{"payment_intent":"pi_1","amount_refunded":500,"currency":"eur"}}}"#;
        assert!(matches!(
            parse_stripe(refund),
            Ok(Parsed::Payment(PaymentEvent {
                kind: Kind::Refunded,
                ..
            }))
        ));
        assert!(
            parse_stripe(br#"{"id":"x","type":"payment_intent.succeeded","data":{"object":{}}}"#)
                .is_err()
        );
    }
}
