//! A signed-in customer verifies a phone (`POST /v1/me/phone`, then `/v1/me/phone/verify`): the first one of an
//! account made through a platform sign-in, which may not order before it has one, or a new one. It is the
//! signup's code flow, under purpose `phone`, and needs a sign-in within the last 5 minutes: a phone is a way in
//! (a password reset goes to it).

use std::net::IpAddr;

use diesel::prelude::*;

use super::sessions::now;
use super::signup::{
    NewVerification, PendingText, VerificationStarted, check_code, check_phone_quota,
    customer_field, field, insert_verification, load_verification, record_text, started,
    verification_not_found,
};
use super::{Identity, PHONE, otp, recent_login};
use crate::crypto::IndexKind;
use crate::db::schema::{customers, security_events, verifications};
use crate::error::{AppError, AppResult, Problem};
use crate::vault::Opened;

impl Identity {
    /// Texts a code to `phone` for the customer — or, when another account has that phone, a text saying
    /// so and no code: the answer is the same either way.
    pub async fn start_phone_verification(
        &self,
        customer_id: &str,
        auth_time: i64,
        phone: &str,
        ip: IpAddr,
    ) -> AppResult<VerificationStarted> {
        recent_login(auth_time, "verify a phone")?;
        let phone = self.parse_phone(phone)?;
        self.limit_texts(ip)?;
        let id = uuid::Uuid::new_v4();
        let code = otp::generate_code();
        let (this, customer, to) = (self.clone(), customer_id.to_owned(), phone.clone());
        let body = self
            .db
            .write(move |conn| -> AppResult<String> {
                let now = now();
                let phone_index = this.vault.blind_index(IndexKind::Phone, to.e164());
                check_phone_quota(conn, &phone_index, now)?;
                let holder: Option<String> = customers::table
                    .filter(customers::phone_index.eq(&phone_index))
                    .select(customers::id)
                    .first(conn)
                    .optional()?;
                let vid = id.to_string();
                let (code_hash, body) = match holder {
                    Some(holder) if holder == customer => {
                        return Err(Problem::conflict(
                            "phone_unchanged",
                            "This phone is the account's already.",
                        )
                        .into());
                    }
                    Some(_) => (None, this.phone_in_use_text()),
                    None => (
                        Some(otp::code_hash(&this.pepper, &vid, PHONE, code.expose())),
                        this.code_text(PHONE, code.expose()),
                    ),
                };
                let sealed = this
                    .vault
                    .seal(conn, &customer, field("phone", &vid), to.e164())?;
                insert_verification(
                    conn,
                    NewVerification {
                        id: &vid,
                        purpose: PHONE,
                        phone_index: &phone_index,
                        person_id: &customer,
                        phone: Some(sealed),
                        name: None,
                        password_hash: None,
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

    /// The texted code: the phone is the customer's from here on.
    pub async fn verify_phone(
        &self,
        customer_id: &str,
        verification_id: &str,
        code: &str,
    ) -> AppResult<()> {
        let (this, customer) = (self.clone(), customer_id.to_owned());
        let (vid, code) = (verification_id.to_owned(), code.to_owned());
        self.db
            .write(move |conn| -> AppResult<Result<(), AppError>> {
                // Another customer's verification is not found, and costs it no attempt.
                let theirs = uuid::Uuid::parse_str(&vid)
                    .ok()
                    .map(|id| load_verification(conn, &id.to_string()))
                    .transpose()?
                    .is_some_and(|row| row.person_id == customer && row.purpose == PHONE);
                if !theirs {
                    return Err(verification_not_found());
                }
                let row = match check_code(conn, &this, &vid, PHONE, &code)? {
                    Ok(row) => row,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                let sealed = row.phone.as_ref().ok_or_else(verification_not_found)?;
                let phone =
                    match this
                        .vault
                        .open(conn, &customer, field("phone", &row.id), sealed)?
                    {
                        Opened::Value(v) => v,
                        Opened::Erased => return Err(verification_not_found()),
                    };
                let sealed_phone = this.vault.seal(
                    conn,
                    &customer,
                    customer_field("phone", &customer),
                    phone.expose(),
                )?;
                let now = now();
                let changed = diesel::update(
                    customers::table
                        .find(&customer)
                        .filter(customers::erased_at.is_null()),
                )
                .set((
                    customers::phone_index.eq(Some(&row.phone_index)),
                    customers::phone.eq(Some(sealed_phone)),
                    customers::updated_at.eq(now),
                ))
                .execute(conn);
                match changed {
                    Ok(1) => {}
                    Ok(_) => return Err(AppError::NotFound),
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => {
                        return Ok(Err(Problem::conflict(
                            "phone_taken",
                            "This phone has just been registered to another account.",
                        )
                        .into()));
                    }
                    Err(e) => return Err(e.into()),
                }
                diesel::update(verifications::table.find(&row.id))
                    .set(verifications::phone.eq(None::<Vec<u8>>))
                    .execute(conn)?;
                diesel::insert_into(security_events::table)
                    .values((
                        security_events::id.eq(uuid::Uuid::now_v7().to_string()),
                        security_events::subject_id.eq(&customer),
                        security_events::kind.eq("phone_verified"),
                        security_events::created_at.eq(now),
                    ))
                    .execute(conn)?;
                Ok(Ok(()))
            })
            .await?
    }

    fn phone_in_use_text(&self) -> String {
        format!(
            "Someone tried to add this number to an account at {domain}, but it belongs to another one already. \
             If it was you, log in with it; if not, ignore this text.",
            domain = self.shop_domain
        )
    }
}
