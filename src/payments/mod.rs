//! Payment providers: the `PaymentProvider` seam through which an order's payment is created, `sandbox` for
//! development (no outside call) and `stripe` (PaymentIntents over HTTPS).
//!
//! Creating a payment must be idempotent per order: calling it again for the same order id after a failure
//! or a timeout gives the same payment (Stripe: the order id is the `Idempotency-Key`; sandbox: the payment id
//! is derived from the order id), so a retried checkout never makes a second charge.

pub mod sandbox;
pub mod stripe;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::PaymentSettings;
use crate::domain::Sensitive;

/// What to collect, for which order.
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    pub order_id: String,
    /// Minor units of `currency`.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: String,
}

/// A payment the app completes with the provider's SDK.
#[derive(Debug, Clone)]
pub struct Payment {
    /// The provider's id (`pi_…` at Stripe, `sbx_…` in the sandbox); webhooks name it.
    pub payment_id: String,
    /// Handed to the app once, for the provider's SDK; never logged.
    pub client_secret: Sensitive<String>,
}

/// Why no payment was created. The text holds no secret.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// Not reachable, timed out, or a 429/5xx: trying again later may work.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// The provider answered that it will not create this payment (bad key, bad amount, …).
    #[error("payment provider refused: {0}")]
    Refused(String),
}

/// Something that creates payments. Object safe: the orders service holds an `Arc<dyn PaymentProvider>`.
pub trait PaymentProvider: Send + Sync + 'static {
    /// `sandbox`, `stripe`: shown to the app as `payment.provider`.
    fn name(&self) -> &'static str;

    fn create_payment<'a>(
        &'a self,
        request: &'a PaymentRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Payment, PaymentError>> + Send + 'a>>;

    /// Refunds a payment in full. Idempotent per order: asking again refunds nothing twice.
    fn refund<'a>(
        &'a self,
        payment_id: &'a str,
        order_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), PaymentError>> + Send + 'a>>;
}

/// The provider the configuration names.
pub fn from_settings(settings: &PaymentSettings) -> Arc<dyn PaymentProvider> {
    match settings {
        PaymentSettings::Sandbox => Arc::new(sandbox::SandboxProvider),
        PaymentSettings::Stripe {
            secret_key,
            api_base,
        } => Arc::new(stripe::StripeProvider::new(stripe::StripeConfig {
            secret_key: secret_key.clone(),
            api_base: api_base.clone(),
        })),
    }
}
