//! Phone verifications: signup (a code texted to a new phone, or an "account exists" text to a known one)
//! and password reset, with the resend rules of DESIGN section 5. The texts are sent after the verification
//! is committed.

use std::net::IpAddr;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::sessions::{Issued, now};
use super::{
    CODE_TTL, Identity, PASSWORD_RESET, RESEND_AFTER, SIGNUP, TEXTS_PER_PHONE_PER_HOUR, otp,
};
use crate::auth::claims::Audience;
use crate::crypto::IndexKind;
use crate::db::schema::{customers, sms_sends, verifications};
use crate::db::{DbConnection, DbError};
use crate::domain::{NewPassword, Phone, Sensitive};
use crate::error::{AppError, AppResult, Problem};
use crate::vault::{Field, Opened};

pub const MAX_ATTEMPTS: i32 = 5;
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationStarted {
    pub verification_id: uuid::Uuid,
    pub expires_in: u64,
    pub resend_after: u64,
}

/// A text to send once the transaction that decided it has committed.
pub(crate) struct PendingText {
    pub phone: Phone,
    pub body: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = verifications)]
pub(crate) struct VerificationRow {
    pub id: String,
    pub purpose: String,
    pub phone_index: Vec<u8>,
    pub person_id: String,
    pub phone: Option<Vec<u8>>,
    pub name: Option<Vec<u8>>,
    pub password_hash: Option<String>,
    pub code_hash: Option<Vec<u8>>,
    pub attempts: i32,
    pub last_sent_at: Option<NaiveDateTime>,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

pub(crate) fn field<'a>(column: &'a str, row_id: &'a str) -> Field<'a> {
    Field {
        table: "verifications",
        column,
        row_id,
    }
}

pub(crate) fn customer_field<'a>(column: &'a str, customer_id: &'a str) -> Field<'a> {
    Field {
        table: "customers",
        column,
        row_id: customer_id,
    }
}

pub(crate) fn chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).expect("short")
}

fn sms_unavailable() -> AppError {
    Problem::new(
        502,
        "sms_unavailable",
        "SMS unavailable",
        "The text could not be sent; try again with POST /v1/auth/otp/resend.",
    )
    .into()
}

/// A verification about to be texted (its first send is now).
pub(crate) struct NewVerification<'a> {
    pub id: &'a str,
    pub purpose: &'a str,
    pub phone_index: &'a [u8],
    pub person_id: &'a str,
    pub phone: Option<Vec<u8>>,
    pub name: Option<Vec<u8>>,
    pub password_hash: Option<&'a str>,
    pub code_hash: Option<Vec<u8>>,
}

pub(crate) fn insert_verification(
    conn: &mut DbConnection,
    v: NewVerification<'_>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::insert_into(verifications::table)
        .values((
            verifications::id.eq(v.id),
            verifications::purpose.eq(v.purpose),
            verifications::phone_index.eq(v.phone_index),
            verifications::person_id.eq(v.person_id),
            verifications::phone.eq(v.phone),
            verifications::name.eq(v.name),
            verifications::password_hash.eq(v.password_hash),
            verifications::code_hash.eq(v.code_hash),
            verifications::attempts.eq(0),
            verifications::sends.eq(1),
            verifications::last_sent_at.eq(Some(now)),
            verifications::expires_at.eq(now + chrono(CODE_TTL)),
            verifications::created_at.eq(now),
        ))
        .execute(conn)
}

/// Refuses when the phone was texted `TEXTS_PER_PHONE_PER_HOUR` times in the last hour.
pub(crate) fn check_phone_quota(
    conn: &mut DbConnection,
    phone_index: &[u8],
    now: NaiveDateTime,
) -> AppResult<()> {
    let hour_ago = now - chrono::Duration::hours(1);
    let sent: Vec<NaiveDateTime> = sms_sends::table
        .filter(sms_sends::phone_index.eq(phone_index))
        .filter(sms_sends::sent_at.gt(hour_ago))
        .order(sms_sends::sent_at.asc())
        .select(sms_sends::sent_at)
        .load(conn)?;
    if sent.len() as i64 >= TEXTS_PER_PHONE_PER_HOUR {
        let wait = (sent[0] + chrono::Duration::hours(1) - now)
            .to_std()
            .unwrap_or_default();
        return Err(
            Problem::too_many(wait, "Too many texts to this phone; try again later.").into(),
        );
    }
    Ok(())
}

pub(crate) fn record_text(
    conn: &mut DbConnection,
    phone_index: &[u8],
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(sms_sends::table)
        .values((
            sms_sends::id.eq(uuid::Uuid::now_v7().to_string()),
            sms_sends::phone_index.eq(phone_index),
            sms_sends::sent_at.eq(now),
        ))
        .execute(conn)
        .map(|_| ())
}

impl Identity {
    /// `POST /v1/auth/signup`. The same answer whether or not the phone has an account.
    pub async fn signup(
        &self,
        phone: &str,
        password: Sensitive<String>,
        name: Option<String>,
        ip: IpAddr,
    ) -> AppResult<VerificationStarted> {
        let phone = self.parse_phone(phone)?;
        let name = match name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
            Some(n) if n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) => {
                return Err(Problem::invalid(
                    "invalid_name",
                    "name",
                    "A name has at most 100 characters.",
                )
                .into());
            }
            other => other,
        };
        let digits = phone.e164().trim_start_matches('+').to_owned();
        let mut context = vec![digits.as_str()];
        if let Some(n) = &name {
            context.push(n.as_str());
        }
        let password = NewPassword::parse(password.expose(), &context)
            .map_err(|e| Problem::invalid("weak_password", "password", e.to_string()))?;
        self.limit_texts(ip)?;
        let password_hash = self
            .hasher
            .hash(Sensitive::new(password.expose().to_owned()))
            .await?;

        let id = uuid::Uuid::new_v4();
        let code = otp::generate_code();
        let this = self.clone();
        let phone_for_tx = phone.clone();
        let code_for_tx = code.clone();
        let body = self
            .db
            .write(move |conn| -> AppResult<String> {
                let now = now();
                let phone = phone_for_tx.clone();
                let phone_index = this.vault.blind_index(IndexKind::Phone, phone.e164());
                check_phone_quota(conn, &phone_index, now)?;
                let existing: Option<String> = customers::table
                    .filter(customers::phone_index.eq(&phone_index))
                    .select(customers::id)
                    .first(conn)
                    .optional()?;
                let vid = id.to_string();
                let (person_id, code_hash, body) = match existing {
                    Some(customer_id) => (customer_id, None, this.account_exists_text()),
                    None => {
                        let person_id = uuid::Uuid::now_v7().to_string();
                        this.vault.create_data_key(conn, &person_id)?;
                        let hash = otp::code_hash(&this.pepper, &vid, SIGNUP, code_for_tx.expose());
                        (
                            person_id,
                            Some(hash),
                            this.code_text(SIGNUP, code_for_tx.expose()),
                        )
                    }
                };
                let sealed_phone =
                    this.vault
                        .seal(conn, &person_id, field("phone", &vid), phone.e164())?;
                let sealed_name = match &name {
                    Some(n) => Some(this.vault.seal(conn, &person_id, field("name", &vid), n)?),
                    None => None,
                };
                insert_verification(
                    conn,
                    NewVerification {
                        id: &vid,
                        purpose: SIGNUP,
                        phone_index: &phone_index,
                        person_id: &person_id,
                        phone: Some(sealed_phone),
                        name: sealed_name,
                        password_hash: Some(&password_hash),
                        code_hash,
                    },
                    now,
                )?;
                record_text(conn, &phone_index, now)?;
                Ok(body)
            })
            .await?;
        self.deliver(&id.to_string(), PendingText { phone, body })
            .await?;
        Ok(started(id))
    }

    /// Sends a committed verification's text; on failure clears the cool-down so a resend works at once.
    pub(crate) async fn deliver(&self, verification_id: &str, text: PendingText) -> AppResult<()> {
        if let Err(e) = self.send_text(&text.phone, text.body).await {
            tracing::warn!(error = %e, "the verification text was not sent");
            let vid = verification_id.to_owned();
            self.db
                .write(move |conn| {
                    diesel::update(verifications::table.find(&vid))
                        .set(verifications::last_sent_at.eq(None::<NaiveDateTime>))
                        .execute(conn)
                        .map_err(DbError::from)
                })
                .await?;
            return Err(sms_unavailable());
        }
        Ok(())
    }

    /// `POST /v1/auth/otp/resend`.
    pub async fn resend(&self, verification_id: &str, ip: IpAddr) -> AppResult<u64> {
        let Ok(id) = uuid::Uuid::parse_str(verification_id) else {
            return Err(verification_not_found());
        };
        self.limit_texts(ip)?;
        let this = self.clone();
        let vid = id.to_string();
        let text = self
            .db
            .write(move |conn| -> AppResult<Option<PendingText>> {
                let now = now();
                let row = load_verification(conn, &vid)?;
                check_usable(&row, now)?;
                if let Some(at) = row.last_sent_at {
                    let ready = at + chrono(RESEND_AFTER);
                    if ready > now {
                        let wait = (ready - now).to_std().unwrap_or_default();
                        return Err(Problem::too_many(
                            wait,
                            "Wait before asking for another code.",
                        )
                        .into());
                    }
                }
                // A password reset for a phone without an account texts nothing, and says so to no one.
                let Some(sealed_phone) = &row.phone else {
                    diesel::update(verifications::table.find(&vid))
                        .set(verifications::last_sent_at.eq(Some(now)))
                        .execute(conn)?;
                    return Ok(None);
                };
                check_phone_quota(conn, &row.phone_index, now)?;
                let phone = match this.vault.open(
                    conn,
                    &row.person_id,
                    field("phone", &vid),
                    sealed_phone,
                )? {
                    Opened::Value(v) => {
                        Phone::parse(v.expose()).map_err(|_| anyhow::anyhow!("stored phone"))?
                    }
                    Opened::Erased => return Err(verification_not_found()),
                };
                let (code_hash, body) = if row.code_hash.is_some() {
                    let code = otp::generate_code();
                    let hash = otp::code_hash(&this.pepper, &vid, &row.purpose, code.expose());
                    (Some(hash), this.code_text(&row.purpose, code.expose()))
                } else {
                    (None, this.account_exists_text())
                };
                diesel::update(verifications::table.find(&vid))
                    .set((
                        verifications::code_hash.eq(code_hash),
                        verifications::sends.eq(verifications::sends + 1),
                        verifications::last_sent_at.eq(Some(now)),
                        verifications::expires_at.eq(now + chrono(CODE_TTL)),
                    ))
                    .execute(conn)?;
                record_text(conn, &row.phone_index, now)?;
                Ok(Some(PendingText { phone, body }))
            })
            .await?;
        if let Some(text) = text {
            self.deliver(&id.to_string(), text).await?;
        }
        Ok(RESEND_AFTER.as_secs())
    }

    /// `POST /v1/auth/signup/verify`: the account exists from here on.
    pub async fn verify_signup(
        &self,
        verification_id: &str,
        code: &str,
        client: String,
    ) -> AppResult<Issued> {
        let this = self.clone();
        let vid = verification_id.to_owned();
        let code = code.to_owned();
        self.db
            .write(move |conn| -> AppResult<Result<Issued, AppError>> {
                let row = match check_code(conn, &this, &vid, SIGNUP, &code)? {
                    Ok(row) => row,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                let customer_id = row.person_id.clone();
                let open = |conn: &mut DbConnection,
                            column: &str,
                            value: &Option<Vec<u8>>|
                 -> AppResult<Option<String>> {
                    match value {
                        None => Ok(None),
                        Some(sealed) => match this.vault.open(
                            conn,
                            &customer_id,
                            field(column, &row.id),
                            sealed,
                        )? {
                            Opened::Value(v) => Ok(Some(v.into_inner())),
                            Opened::Erased => Err(verification_not_found()),
                        },
                    }
                };
                let phone = open(conn, "phone", &row.phone)?.ok_or_else(verification_not_found)?;
                let name = open(conn, "name", &row.name)?;
                let sealed_phone = this.vault.seal(
                    conn,
                    &customer_id,
                    customer_field("phone", &customer_id),
                    &phone,
                )?;
                let sealed_name = match &name {
                    Some(n) => Some(this.vault.seal(
                        conn,
                        &customer_id,
                        customer_field("name", &customer_id),
                        n,
                    )?),
                    None => None,
                };
                let now = now();
                let inserted = diesel::insert_into(customers::table)
                    .values((
                        customers::id.eq(&customer_id),
                        customers::phone_index.eq(Some(&row.phone_index)),
                        customers::phone.eq(Some(sealed_phone)),
                        customers::name.eq(sealed_name),
                        customers::password_hash.eq(&row.password_hash),
                        customers::created_at.eq(now),
                        customers::updated_at.eq(now),
                    ))
                    .execute(conn);
                match inserted {
                    Ok(_) => {}
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => {
                        return Ok(Err(Problem::conflict(
                            "phone_taken",
                            "This phone has just been registered; log in instead.",
                        )
                        .into()));
                    }
                    Err(e) => return Err(e.into()),
                }
                // The pending copies are no longer needed.
                diesel::update(verifications::table.find(&row.id))
                    .set((
                        verifications::phone.eq(None::<Vec<u8>>),
                        verifications::name.eq(None::<Vec<u8>>),
                        verifications::password_hash.eq(None::<String>),
                    ))
                    .execute(conn)?;
                let mut issued = this.tokens.start(
                    conn,
                    Audience::Customer,
                    &customer_id,
                    None,
                    &client,
                    super::sessions::Factors::PASSWORD_AND_SMS,
                )?;
                // The texted code was this device's second factor.
                issued.device_token = Some(super::devices::remember(conn, &customer_id)?);
                Ok(Ok(issued))
            })
            .await?
    }
}

pub(crate) fn started(id: uuid::Uuid) -> VerificationStarted {
    VerificationStarted {
        verification_id: id,
        expires_in: CODE_TTL.as_secs(),
        resend_after: RESEND_AFTER.as_secs(),
    }
}

pub(crate) fn verification_not_found() -> AppError {
    Problem::new(
        404,
        "verification_not_found",
        "Not found",
        "There is no such verification.",
    )
    .into()
}

pub(crate) fn load_verification(conn: &mut DbConnection, id: &str) -> AppResult<VerificationRow> {
    verifications::table
        .find(id)
        .select(VerificationRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(verification_not_found)
}

fn check_usable(row: &VerificationRow, now: NaiveDateTime) -> AppResult<()> {
    if row.used_at.is_some() {
        return Err(Problem::invalid(
            "verification_used",
            "verification_id",
            "This code was used already.",
        )
        .into());
    }
    if row.attempts >= MAX_ATTEMPTS {
        return Err(Problem::invalid(
            "verification_locked",
            "verification_id",
            "Too many wrong codes; start again.",
        )
        .into());
    }
    if row.expires_at <= now {
        return Err(Problem::invalid(
            "code_expired",
            "code",
            "The code has expired; ask for a new one.",
        )
        .into());
    }
    Ok(())
}

/// Checks a code inside the caller's write transaction. A wrong code counts an attempt (which must be
/// committed), so it comes back as `Ok(Err(refusal))`; a right one marks the verification used.
pub(crate) fn check_code(
    conn: &mut DbConnection,
    identity: &Identity,
    verification_id: &str,
    purpose: &str,
    code: &str,
) -> AppResult<Result<VerificationRow, AppError>> {
    let Ok(id) = uuid::Uuid::parse_str(verification_id) else {
        return Err(verification_not_found());
    };
    let vid = id.to_string();
    let row = load_verification(conn, &vid)?;
    if row.purpose != purpose {
        return Err(verification_not_found());
    }
    let now = now();
    check_usable(&row, now)?;
    if !otp::code_matches(
        &identity.pepper,
        &vid,
        purpose,
        code,
        row.code_hash.as_deref(),
    ) {
        diesel::update(verifications::table.find(&vid))
            .set(verifications::attempts.eq(verifications::attempts + 1))
            .execute(conn)?;
        identity.metrics.wrong_code(match purpose {
            SIGNUP => SIGNUP,
            super::PHONE => super::PHONE,
            super::LOGIN => super::LOGIN,
            _ => PASSWORD_RESET,
        });
        let left = MAX_ATTEMPTS - row.attempts - 1;
        let refusal = if left <= 0 {
            Problem::invalid(
                "verification_locked",
                "code",
                "Too many wrong codes; start again.",
            )
        } else {
            Problem::invalid(
                "invalid_code",
                "code",
                format!("The code is not right; {left} tries left."),
            )
        };
        return Ok(Err(refusal.into()));
    }
    let marked = diesel::update(
        verifications::table
            .find(&vid)
            .filter(verifications::used_at.is_null()),
    )
    .set(verifications::used_at.eq(Some(now)))
    .execute(conn)?;
    if marked != 1 {
        return Err(Problem::invalid(
            "verification_used",
            "verification_id",
            "This code was used already.",
        )
        .into());
    }
    Ok(Ok(row))
}

/// Starts a password reset verification (used by `account`).
pub(crate) fn insert_reset(
    conn: &mut DbConnection,
    identity: &Identity,
    id: &str,
    phone: &Phone,
    code: &str,
) -> AppResult<bool> {
    let now = now();
    let phone_index = identity.vault.blind_index(IndexKind::Phone, phone.e164());
    let customer: Option<String> = customers::table
        .filter(customers::phone_index.eq(&phone_index))
        .select(customers::id)
        .first(conn)
        .optional()?;
    let (person_id, sealed_phone, code_hash) = match &customer {
        Some(customer_id) => {
            check_phone_quota(conn, &phone_index, now)?;
            let sealed =
                identity
                    .vault
                    .seal(conn, customer_id, field("phone", id), phone.e164())?;
            let hash = otp::code_hash(&identity.pepper, id, PASSWORD_RESET, code);
            record_text(conn, &phone_index, now)?;
            (customer_id.clone(), Some(sealed), Some(hash))
        }
        None => (uuid::Uuid::now_v7().to_string(), None, None),
    };
    insert_verification(
        conn,
        NewVerification {
            id,
            purpose: PASSWORD_RESET,
            phone_index: &phone_index,
            person_id: &person_id,
            phone: sealed_phone,
            name: None,
            password_hash: None,
            code_hash,
        },
        now,
    )?;
    Ok(customer.is_some())
}
