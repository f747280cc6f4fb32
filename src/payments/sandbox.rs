//! The development provider: no outside call. The payment id is `sbx_` and the order id's 32 hex digits, so
//! creating it again for the same order gives the same id; `shopd simulate-payment` plays the provider's
//! webhook for it.

use std::future::Future;
use std::pin::Pin;

use super::{Payment, PaymentError, PaymentProvider, PaymentRequest};
use crate::domain::Sensitive;

#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxProvider;

/// The sandbox payment id of an order.
pub fn payment_id_for(order_id: &str) -> String {
    let digits: String = order_id.chars().filter(char::is_ascii_hexdigit).collect();
    format!("sbx_{digits}")
}

impl PaymentProvider for SandboxProvider {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn create_payment<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Payment, PaymentError>> + Send + 'a>> {
        Box::pin(async move {
            let payment_id = payment_id_for(&request.order_id);
            let secret = hex::encode(crate::config::secrets::random_bytes::<16>());
            Ok(Payment {
                client_secret: Sensitive::new(format!("{payment_id}_secret_{secret}")),
                payment_id,
            })
        })
    }

    /// The sandbox refunds at once.
    fn refund<'a>(
        &'a self,
        _payment_id: &'a str,
        _order_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), PaymentError>> + Send + 'a>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_order_gets_the_same_payment_id() {
        let request = PaymentRequest {
            order_id: "0193a0b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b".into(),
            amount: 1250,
            currency: "EUR".into(),
        };
        let a = SandboxProvider.create_payment(&request).await.unwrap();
        let b = SandboxProvider.create_payment(&request).await.unwrap();
        assert_eq!(a.payment_id, "sbx_0193a0b27c3d7e4f8a5b6c7d8e9f0a1b");
        assert_eq!(a.payment_id, b.payment_id);
        assert!(a.client_secret.expose().starts_with("sbx_0193a0b2"));
        assert_ne!(a.client_secret, b.client_secret);
    }
}
