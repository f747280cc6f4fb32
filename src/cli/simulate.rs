//! `shopd simulate-payment`: what the sandbox provider's dashboard would do — build the Standard Webhooks event
//! for an order, sign it with the configured secret and post it to the running server.

use clap::Args;

use crate::db::Db;
use crate::orders::read;

#[derive(Args)]
pub struct SimulatePayment {
    /// The order to pay.
    order_id: String,
    /// Send `payment.failed` instead.
    #[arg(long, conflicts_with = "refund")]
    fail: bool,
    /// Send `payment.refunded` instead.
    #[arg(long)]
    refund: bool,
    /// The amount to report, in minor units (default: the order's total).
    #[arg(long)]
    amount: Option<i64>,
}

pub fn run(args: SimulatePayment) -> Result<(), String> {
    let config = super::load_config()?;
    let secrets = config
        .webhooks
        .standard
        .clone()
        .ok_or("STANDARD_WEBHOOK_SECRETS is not set")?;
    let db = Db::connect(&config.database).map_err(|e| e.to_string())?;
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let order = read::summary(&mut conn, &args.order_id).map_err(|e| match e {
        crate::error::AppError::NotFound => format!("no order {}", args.order_id),
        other => other.to_string(),
    })?;
    let payment_id = order
        .payment_id
        .clone()
        .ok_or("the order has no payment yet")?;
    let kind = if args.fail {
        "payment.failed"
    } else if args.refund {
        "payment.refunded"
    } else {
        "payment.succeeded"
    };
    let body = serde_json::json!({
        "type": kind,
        "data": {
            "payment_id": payment_id,
            "order_id": order.id,
            "amount": args.amount.unwrap_or(order.total.amount),
            "currency": order.total.currency,
        }
    })
    .to_string();
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let timestamp = chrono::Utc::now().timestamp();
    let signature = secrets.sign_standard(&id, timestamp, body.as_bytes());
    let url = format!("http://{}/v1/webhooks/standard", config.bind);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (status, answer) = runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok::<_, String>((status, text))
    })?;
    println!("{kind} {id} → {status} {answer}");
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the server answered {status}"))
    }
}
