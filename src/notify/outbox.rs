//! The transactional outbox of e-mail (`docs/notifications.md`).
//!
//! A feature that causes a message calls [`enqueue`] with its own connection, inside the transaction that
//! records the cause, so the message exists if and only if the cause was committed. A row names its
//! recipient by reference only (a customer id, or the configured staff alert address) and carries
//! non-personal data (order ids, totals, item names); the address is opened through the vault only when the
//! background sender (`notify::sender`) delivers it.
//!
//! Rows move `pending` → `sent`, `dropped` (nobody to send to) or `failed` (refused for good, or undelivered
//! when the retry window closed). A sender owns a pending row while `claimed_until` is ahead: the claim is one
//! conditional UPDATE, so two instances never send the same row at once, and a claim left by a dead process
//! simply expires.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::DbConnection;
use crate::db::schema::outbox;

pub const PENDING: &str = "pending";
pub const SENT: &str = "sent";
pub const DROPPED: &str = "dropped";
pub const FAILED: &str = "failed";

pub const TO_CUSTOMER: &str = "customer";
pub const TO_STAFF_ALERT: &str = "staff_alert";
pub const TO_STAFF: &str = "staff";

/// An amount of money in minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub minor_units: i64,
    pub currency: String,
}

impl Amount {
    pub fn new(minor_units: i64, currency: impl Into<String>) -> Self {
        Self {
            minor_units,
            currency: currency.into(),
        }
    }
}

/// Digits after the decimal point of an ISO 4217 currency (2 unless listed).
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// `12.34 EUR`, `-0.05 GBP`, `1500 JPY`.
impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = minor_digits(&self.currency);
        let sign = if self.minor_units < 0 { "-" } else { "" };
        let abs = self.minor_units.unsigned_abs();
        if digits == 0 {
            return write!(f, "{sign}{abs} {}", self.currency);
        }
        let scale = 10u64.pow(digits);
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            abs / scale,
            abs % scale,
            self.currency,
            width = digits as usize
        )
    }
}

/// One line of an order as the confirmation shows it: the product's name and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub name: String,
    pub quantity: u32,
}

/// A message to send. Every field is non-personal: the customer is named by id, and the address is looked up
/// (and decrypted) only at send time. A customer without an e-mail address, or erased by then, gets nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum Notification {
    /// To the customer: order number, items and total (never the address or the phone).
    OrderConfirmation {
        customer_id: String,
        order_id: String,
        items: Vec<OrderItem>,
        total: Amount,
    },
    /// To `STAFF_ALERT_EMAIL`: order id and total only. Dropped when no staff alert address is set.
    OrderPaidStaffAlert { order_id: String, total: Amount },
    OrderShipped {
        customer_id: String,
        order_id: String,
    },
    Refunded {
        customer_id: String,
        order_id: String,
        amount: Amount,
    },
    /// A spent refresh token was presented again and its session ended.
    SessionEndedByTokenReuse { customer_id: String },
    /// To `STAFF_ALERT_EMAIL`: a staff member's spent refresh token was presented again and their session
    /// ended. The staff member is named by id only.
    StaffSessionEndedByTokenReuse { staff_id: String },
    /// The password was changed (by a reset).
    PasswordChanged { customer_id: String },
    /// To a new staff member: the one-time link to set their password. The link's secret is not stored here:
    /// the sender makes it from the invitation's id (`staff::invitations::link_secret`).
    StaffInvitation {
        staff_id: String,
        invitation_id: String,
    },
}

/// Who a message goes to, by reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient<'a> {
    Customer(&'a str),
    StaffAlert,
    /// A staff member, by id: their e-mail, opened through the vault.
    Staff(&'a str),
}

impl Notification {
    /// The template's name: `templates/email/{name}.txt` and `.html`.
    pub fn template(&self) -> &'static str {
        match self {
            Self::OrderConfirmation { .. } => "order_confirmation",
            Self::OrderPaidStaffAlert { .. } => "order_paid_staff_alert",
            Self::OrderShipped { .. } => "order_shipped",
            Self::Refunded { .. } => "refunded",
            Self::SessionEndedByTokenReuse { .. } => "session_ended_by_token_reuse",
            Self::StaffSessionEndedByTokenReuse { .. } => "staff_session_ended_by_token_reuse",
            Self::PasswordChanged { .. } => "password_changed",
            Self::StaffInvitation { .. } => "staff_invitation",
        }
    }

    pub fn recipient(&self) -> Recipient<'_> {
        match self {
            Self::OrderConfirmation { customer_id, .. }
            | Self::OrderShipped { customer_id, .. }
            | Self::Refunded { customer_id, .. }
            | Self::SessionEndedByTokenReuse { customer_id }
            | Self::PasswordChanged { customer_id } => Recipient::Customer(customer_id),
            Self::OrderPaidStaffAlert { .. } | Self::StaffSessionEndedByTokenReuse { .. } => {
                Recipient::StaffAlert
            }
            Self::StaffInvitation { staff_id, .. } => Recipient::Staff(staff_id),
        }
    }
}

pub fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Writes `notification` into the outbox on `conn`. Call it inside the transaction that records its cause:
/// the message then exists exactly when the cause was committed, and is sent soon after by a sender on any
/// instance. Returns nothing the caller needs; the sender takes it from here.
pub fn enqueue(conn: &mut DbConnection, notification: Notification) -> QueryResult<()> {
    let data = serde_json::to_string(&notification)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let (kind, customer_id) = match notification.recipient() {
        Recipient::Customer(id) => (TO_CUSTOMER, Some(id.to_owned())),
        Recipient::StaffAlert => (TO_STAFF_ALERT, None),
        Recipient::Staff(_) => (TO_STAFF, None),
    };
    let now = now();
    diesel::insert_into(outbox::table)
        .values((
            outbox::id.eq(uuid::Uuid::now_v7().to_string()),
            outbox::template.eq(notification.template()),
            outbox::recipient_kind.eq(kind),
            outbox::customer_id.eq(customer_id),
            outbox::data.eq(data),
            outbox::status.eq(PENDING),
            outbox::attempts.eq(0),
            outbox::next_attempt_at.eq(now),
            outbox::created_at.eq(now),
        ))
        .execute(conn)
        .map(|_| ())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    pub id: String,
    pub template: String,
    pub recipient_kind: String,
    pub customer_id: Option<String>,
    pub data: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub claimed_by: Option<String>,
    pub claimed_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

impl OutboxRow {
    /// The notification the row carries; an error for a row this version cannot read.
    pub fn notification(&self) -> Result<Notification, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

/// Whether any row is due and unclaimed: a read, so an idle sender never takes the write lock.
pub fn any_due(conn: &mut DbConnection) -> QueryResult<bool> {
    let now = now();
    diesel::select(diesel::dsl::exists(
        outbox::table
            .filter(outbox::status.eq(PENDING))
            .filter(outbox::next_attempt_at.le(now))
            .filter(
                outbox::claimed_until
                    .is_null()
                    .or(outbox::claimed_until.lt(now)),
            ),
    ))
    .get_result(conn)
}

/// Claims up to `limit` due rows for `claimer` until `now + ttl` and returns them. Run it in a write
/// transaction. Each claim is a conditional UPDATE (still pending, claim free or expired), so of two senders
/// racing for a row exactly one gets it, on SQLite and PostgreSQL alike.
pub fn claim_due(
    conn: &mut DbConnection,
    claimer: &str,
    ttl: chrono::Duration,
    limit: i64,
) -> QueryResult<Vec<OutboxRow>> {
    let now = now();
    let free = outbox::claimed_until
        .is_null()
        .or(outbox::claimed_until.lt(now));
    let due: Vec<String> = outbox::table
        .filter(outbox::status.eq(PENDING))
        .filter(outbox::next_attempt_at.le(now))
        .filter(free)
        .order(outbox::next_attempt_at.asc())
        .select(outbox::id)
        .limit(limit)
        .load(conn)?;
    let mut claimed = Vec::with_capacity(due.len());
    for id in due {
        let won = diesel::update(
            outbox::table
                .find(&id)
                .filter(outbox::status.eq(PENDING))
                .filter(
                    outbox::claimed_until
                        .is_null()
                        .or(outbox::claimed_until.lt(now)),
                ),
        )
        .set((
            outbox::claimed_by.eq(claimer),
            outbox::claimed_until.eq(now + ttl),
        ))
        .execute(conn)?;
        if won == 1 {
            claimed.push(id);
        }
    }
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    outbox::table
        .filter(outbox::id.eq_any(&claimed))
        .order(outbox::next_attempt_at.asc())
        .select(OutboxRow::as_select())
        .load(conn)
}

/// Gives back the claims of `claimer` that it will not use (on shutdown), so another sender need not wait.
pub fn release(conn: &mut DbConnection, claimer: &str) -> QueryResult<usize> {
    diesel::update(
        outbox::table
            .filter(outbox::claimed_by.eq(claimer))
            .filter(outbox::status.eq(PENDING)),
    )
    .set((
        outbox::claimed_by.eq(None::<String>),
        outbox::claimed_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)
}

/// Marks a row sent. Not conditional on the claim: the message went out, whoever holds the row now.
/// Returns false when the row was no longer pending (another sender marked it after a claim expired).
pub fn mark_sent(conn: &mut DbConnection, id: &str) -> QueryResult<bool> {
    let now = now();
    diesel::update(outbox::table.find(id).filter(outbox::status.eq(PENDING)))
        .set((
            outbox::status.eq(SENT),
            outbox::attempts.eq(outbox::attempts + 1),
            outbox::finished_at.eq(Some(now)),
            outbox::claimed_by.eq(None::<String>),
            outbox::claimed_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)
        .map(|n| n == 1)
}

/// Marks a claimed row dropped: there was nobody to send it to (`reason` says why).
pub fn mark_dropped(
    conn: &mut DbConnection,
    id: &str,
    claimer: &str,
    reason: &str,
) -> QueryResult<bool> {
    diesel::update(
        outbox::table
            .find(id)
            .filter(outbox::status.eq(PENDING))
            .filter(outbox::claimed_by.eq(claimer)),
    )
    .set((
        outbox::status.eq(DROPPED),
        outbox::last_error.eq(Some(reason)),
        outbox::finished_at.eq(Some(now())),
        outbox::claimed_by.eq(None::<String>),
        outbox::claimed_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// What to do with a row after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(NaiveDateTime),
    GiveUp,
}

/// Records a failed attempt of a claimed row: one more attempt, the (scrubbed) error, and either the time of
/// the next attempt or `failed` for good. Only the holder of the claim may record it.
pub fn record_failure(
    conn: &mut DbConnection,
    id: &str,
    claimer: &str,
    error: &str,
    after: AfterFailure,
) -> QueryResult<bool> {
    let target = outbox::table
        .find(id)
        .filter(outbox::status.eq(PENDING))
        .filter(outbox::claimed_by.eq(claimer));
    let release = (
        outbox::attempts.eq(outbox::attempts + 1),
        outbox::last_error.eq(Some(error)),
        outbox::claimed_by.eq(None::<String>),
        outbox::claimed_until.eq(None::<NaiveDateTime>),
    );
    let updated = match after {
        AfterFailure::RetryAt(at) => diesel::update(target)
            .set((release, outbox::next_attempt_at.eq(at)))
            .execute(conn)?,
        AfterFailure::GiveUp => diesel::update(target)
            .set((
                release,
                outbox::status.eq(FAILED),
                outbox::finished_at.eq(Some(now())),
            ))
            .execute(conn)?,
    };
    Ok(updated == 1)
}

/// The newest rows, or with `failing` only those that failed for good or are being retried after a failure.
pub fn list(conn: &mut DbConnection, failing: bool, limit: i64) -> QueryResult<Vec<OutboxRow>> {
    let mut query = outbox::table
        .select(OutboxRow::as_select())
        .order(outbox::created_at.desc())
        .limit(limit)
        .into_boxed();
    if failing {
        query = query.filter(
            outbox::status
                .eq(FAILED)
                .or(outbox::status.eq(PENDING).and(outbox::attempts.gt(0))),
        );
    }
    query.load(conn)
}

/// Puts a failed row back in the queue, due now. Returns whether there was such a row.
pub fn retry(conn: &mut DbConnection, id: &str) -> QueryResult<bool> {
    diesel::update(outbox::table.find(id).filter(outbox::status.eq(FAILED)))
        .set((
            outbox::status.eq(PENDING),
            outbox::next_attempt_at.eq(now()),
            outbox::finished_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)
        .map(|n| n == 1)
}

/// How many rows wait, are being retried, or failed for good: the gauges an operator watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Pending and never tried yet.
    pub pending: i64,
    /// Pending after at least one failed attempt.
    pub retrying: i64,
    pub failed: i64,
}

pub fn backlog(conn: &mut DbConnection) -> QueryResult<Backlog> {
    let count = |conn: &mut DbConnection, status: &str, tried: Option<bool>| {
        let mut query = outbox::table
            .filter(outbox::status.eq(status.to_owned()))
            .into_boxed();
        query = match tried {
            Some(true) => query.filter(outbox::attempts.gt(0)),
            Some(false) => query.filter(outbox::attempts.eq(0)),
            None => query,
        };
        query.count().get_result::<i64>(conn)
    };
    Ok(Backlog {
        pending: count(conn, PENDING, Some(false))?,
        retrying: count(conn, PENDING, Some(true))?,
        failed: count(conn, FAILED, None)?,
    })
}

/// Deletes sent and dropped rows finished before `before`; failed rows stay until an operator acts.
pub fn purge_finished(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(
        outbox::table
            .filter(outbox::status.eq_any([SENT, DROPPED]))
            .filter(outbox::finished_at.lt(before)),
    )
    .execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_print_in_their_currency_s_minor_units() {
        assert_eq!(Amount::new(1234, "EUR").to_string(), "12.34 EUR");
        assert_eq!(Amount::new(5, "GBP").to_string(), "0.05 GBP");
        assert_eq!(Amount::new(-5, "GBP").to_string(), "-0.05 GBP");
        assert_eq!(Amount::new(1500, "JPY").to_string(), "1500 JPY");
        assert_eq!(Amount::new(1234, "KWD").to_string(), "1.234 KWD");
        assert_eq!(
            Amount::new(i64::MIN, "EUR").to_string(),
            "-92233720368547758.08 EUR"
        );
    }

    #[test]
    fn a_notification_round_trips_through_its_json() {
        let n = Notification::OrderConfirmation {
            customer_id: "c1".into(),
            order_id: "o1".into(),
            items: vec![OrderItem {
                name: "Mug".into(),
                quantity: 2,
            }],
            total: Amount::new(1800, "EUR"),
        };
        let json = serde_json::to_string(&n).unwrap();
        assert!(
            json.starts_with(r#"{"template":"order_confirmation""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Notification>(&json).unwrap(), n);
        let reuse = Notification::SessionEndedByTokenReuse {
            customer_id: "c".into(),
        };
        let json = serde_json::to_value(&reuse).unwrap();
        assert_eq!(json["template"], reuse.template());
        let staff = Notification::OrderPaidStaffAlert {
            order_id: "o".into(),
            total: Amount::new(1, "EUR"),
        };
        assert_eq!(
            serde_json::to_value(&staff).unwrap()["template"],
            staff.template()
        );
        assert_eq!(staff.recipient(), Recipient::StaffAlert);
    }
}
