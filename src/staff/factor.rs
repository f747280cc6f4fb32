//! The staff's second factor: TOTP (RFC 6238, through `totp-rs`) and ten one-time recovery codes. A factor is
//! enrolled in the console: a secret sealed under the member's data key, counted once its first code was right.
//! A code is taken once (the time step of the last one is kept); a recovery code once (kept as its SHA-256).
//! Wrong codes are failed logins of their own key (`auth::throttle`): the same back-off as passwords.

use std::fmt;

use diesel::prelude::*;
use sha2::{Digest, Sha256};
use totp_rs::{Builder, Secret, Totp};

use super::{Role, Staff, email_field};
use crate::auth::sessions::now;
use crate::auth::throttle;
use crate::db::DbConnection;
use crate::db::schema::{console_sessions, staff, staff_factors, staff_recovery_codes};
use crate::domain::{Sensitive, mask_email};
use crate::error::{AppError, AppResult, Problem};
use crate::vault::{Field, Opened, Vault};

pub const RECOVERY_CODES: usize = 10;
const ISSUER: &str = "shopd staff";

/// How far a member's factor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorState {
    Missing,
    /// Made for an enrolment, its first code not yet given.
    Unconfirmed,
    Confirmed,
}

/// What the enrolment page shows: the QR code (SVG made here) and the secret for typing in by hand.
pub struct Enrolment {
    pub secret: Sensitive<String>,
    pub qr_svg: Sensitive<String>,
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Enrolment([redacted])")
    }
}

/// Why a sign-in that named the right password is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactorRefusal {
    /// The member has a factor and gave no code.
    CodeRequired,
    /// The code was wrong or used already.
    WrongCode,
    /// The member's role needs a factor and none is enrolled: enrol in the console first.
    EnrolmentRequired,
    Throttled(std::time::Duration),
}

impl From<FactorRefusal> for AppError {
    fn from(refusal: FactorRefusal) -> Self {
        match refusal {
            FactorRefusal::CodeRequired => Problem::unauthorized(
                "second_factor_required",
                "Give the code of your authenticator app (or a recovery code) as `code`.",
            )
            .into(),
            FactorRefusal::WrongCode => Problem::unauthorized(
                "invalid_second_factor",
                "The code is wrong or was used already.",
            )
            .into(),
            FactorRefusal::EnrolmentRequired => Problem::new(
                403,
                "second_factor_enrolment_required",
                "Second factor needed",
                "Sign in to the staff console at /staff/ once to set up an authenticator app.",
            )
            .into(),
            FactorRefusal::Throttled(wait) => Problem {
                code: "login_throttled",
                ..Problem::too_many(wait, "Too many wrong codes; wait before trying again.")
            }
            .into(),
        }
    }
}

fn secret_field(staff_id: &str) -> Field<'_> {
    Field {
        table: "staff_factors",
        column: "secret",
        row_id: staff_id,
    }
}

/// The failed-login key of a member's codes.
fn throttle_key(staff_id: &str) -> Vec<u8> {
    format!("staff-factor:{staff_id}").into_bytes()
}

fn totp(secret: &[u8], account: &str) -> AppResult<Totp> {
    Builder::new()
        .with_secret(Secret::from(secret.to_vec()))
        .with_issuer(Some(ISSUER))
        .with_account_name(account)
        .build()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("TOTP: {e}")))
}

fn hash_recovery_code(code: &str) -> Vec<u8> {
    Sha256::digest(normalise(code).as_bytes()).to_vec()
}

/// A code as typed, without spaces or dashes, lower case.
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn unix_now() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

pub fn state(conn: &mut DbConnection, staff_id: &str) -> QueryResult<FactorState> {
    let confirmed: Option<Option<chrono::NaiveDateTime>> = staff_factors::table
        .find(staff_id)
        .select(staff_factors::confirmed_at)
        .first(conn)
        .optional()?;
    Ok(match confirmed {
        None => FactorState::Missing,
        Some(None) => FactorState::Unconfirmed,
        Some(Some(_)) => FactorState::Confirmed,
    })
}

/// The factor's secret and the step of its last code taken.
fn stored(
    conn: &mut DbConnection,
    vault: &Vault,
    staff_id: &str,
) -> AppResult<Option<(Vec<u8>, i64)>> {
    let row: Option<(Vec<u8>, i64)> = staff_factors::table
        .find(staff_id)
        .select((staff_factors::secret, staff_factors::last_step))
        .first(conn)
        .optional()?;
    let Some((sealed, last_step)) = row else {
        return Ok(None);
    };
    match vault.open(conn, staff_id, secret_field(staff_id), &sealed)? {
        Opened::Value(b32) => {
            let secret = Secret::try_from_base32(b32.expose())
                .map_err(|e| AppError::Internal(anyhow::anyhow!("a stored TOTP secret: {e}")))?;
            Ok(Some((secret.as_bytes().to_vec(), last_step)))
        }
        Opened::Erased => Ok(None),
    }
}

/// Takes a TOTP code of the factor, once: the step it names must be after the last one taken.
fn take_totp(
    conn: &mut DbConnection,
    vault: &Vault,
    staff_id: &str,
    code: &str,
    at: u64,
) -> AppResult<Option<i64>> {
    let Some((secret, last_step)) = stored(conn, vault, staff_id)? else {
        return Ok(None);
    };
    let Some(step) = totp(&secret, "staff")?.check(code, at) else {
        return Ok(None);
    };
    let step = step as i64;
    if step <= last_step {
        return Ok(None);
    }
    let taken = diesel::update(
        staff_factors::table
            .find(staff_id)
            .filter(staff_factors::last_step.lt(step)),
    )
    .set(staff_factors::last_step.eq(step))
    .execute(conn)?;
    Ok((taken == 1).then_some(step))
}

/// Checks a code (six digits from the app, or a recovery code) against the member's confirmed factor and
/// takes it. A wrong code is recorded as a failure of the member's codes; while they back off, no code is
/// looked at. Run inside a write transaction that commits in either case.
pub fn check_code(
    conn: &mut DbConnection,
    vault: &Vault,
    staff_id: &str,
    code: &str,
) -> AppResult<Result<(), FactorRefusal>> {
    let key = throttle_key(staff_id);
    if let Some(wait) = throttle::login_delay(conn, &key, now())? {
        return Ok(Err(FactorRefusal::Throttled(wait)));
    }
    let code = normalise(code);
    let taken = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        take_totp(conn, vault, staff_id, &code, unix_now())?.is_some()
    } else {
        diesel::update(
            staff_recovery_codes::table
                .find(hash_recovery_code(&code))
                .filter(staff_recovery_codes::staff_id.eq(staff_id))
                .filter(staff_recovery_codes::used_at.is_null()),
        )
        .set(staff_recovery_codes::used_at.eq(Some(now())))
        .execute(conn)?
            == 1
    };
    if !taken {
        throttle::record_login_failure(conn, &key, now())?;
        return Ok(Err(FactorRefusal::WrongCode));
    }
    throttle::clear_login_failures(conn, &key)?;
    Ok(Ok(()))
}

/// What a sign-in that gave the right password still needs before a session starts: `Ok(())` when the code
/// given is right, or the member needs no factor and has none.
pub fn second_factor(
    conn: &mut DbConnection,
    vault: &Vault,
    staff_id: &str,
    needed: bool,
    code: Option<&str>,
) -> AppResult<Result<bool, FactorRefusal>> {
    match (state(conn, staff_id)?, code) {
        (FactorState::Confirmed, Some(code)) => {
            Ok(check_code(conn, vault, staff_id, code)?.map(|()| true))
        }
        (FactorState::Confirmed, None) => Ok(Err(FactorRefusal::CodeRequired)),
        (_, _) if needed => Ok(Err(FactorRefusal::EnrolmentRequired)),
        (_, _) => Ok(Ok(false)),
    }
}

fn random_recovery_code() -> String {
    let raw = crate::config::secrets::random_bytes::<10>();
    let text = totp_rs::Secret::from(raw.to_vec())
        .to_base32()
        .to_lowercase();
    text.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("-")
}

/// Whether a member of `role` (as stored; an unknown one counts as above clerk) must have a second factor.
pub fn needed(role: Option<Role>, clerks_need_factor: bool) -> bool {
    role.is_none_or(|r| r > Role::Clerk) || clerks_need_factor
}

impl Staff {
    /// Whether a member of `role` must have a second factor to sign in.
    pub fn needs_factor(&self, role: Role) -> bool {
        needed(Some(role), self.clerks_need_factor)
    }

    pub async fn factor_state(&self, staff_id: &str) -> AppResult<FactorState> {
        let id = staff_id.to_owned();
        self.db
            .run(move |conn| -> AppResult<FactorState> { Ok(state(conn, &id)?) })
            .await
    }

    /// The member's enrolment: the unconfirmed factor made earlier, or a new one. Refused once a factor is
    /// confirmed (an admin resets it first).
    pub async fn enrolment(&self, staff_id: &str) -> AppResult<Enrolment> {
        let vault = self.vault.clone();
        let id = staff_id.to_owned();
        self.db
            .write(move |conn| -> AppResult<Enrolment> {
                let sealed_email: Vec<u8> =
                    staff::table.find(&id).select(staff::email).first(conn)?;
                let account = match vault.open(conn, &id, email_field(&id), &sealed_email)? {
                    Opened::Value(v) => mask_email(v.expose()),
                    Opened::Erased => id.clone(),
                };
                let secret = match state(conn, &id)? {
                    FactorState::Confirmed => {
                        return Err(Problem::conflict(
                            "second_factor_enrolled",
                            "A second factor is set up already; an admin can reset it.",
                        )
                        .into());
                    }
                    FactorState::Unconfirmed => {
                        stored(conn, &vault, &id)?.ok_or(AppError::NotFound)?.0
                    }
                    FactorState::Missing => {
                        let raw = crate::config::secrets::random_bytes::<20>().to_vec();
                        let b32 = Secret::from(raw.clone()).to_base32();
                        let sealed = vault.seal(conn, &id, secret_field(&id), &b32)?;
                        diesel::insert_into(staff_factors::table)
                            .values((
                                staff_factors::staff_id.eq(&id),
                                staff_factors::secret.eq(&sealed),
                                staff_factors::last_step.eq(0_i64),
                                staff_factors::created_at.eq(now()),
                            ))
                            .execute(conn)?;
                        raw
                    }
                };
                let totp = totp(&secret, &account)?;
                let url = totp
                    .to_url()
                    .map_err(|e| AppError::Internal(anyhow::anyhow!("TOTP URL: {e}")))?;
                let qr = qrcode::QrCode::new(url.as_bytes())
                    .map_err(|e| AppError::Internal(anyhow::anyhow!("QR code: {e}")))?;
                let svg = qr
                    .render::<qrcode::render::svg::Color>()
                    .min_dimensions(200, 200)
                    .quiet_zone(true)
                    .build();
                // Inline in a page: the element without its XML prolog.
                let svg = svg
                    .find("<svg")
                    .map_or(svg.clone(), |at| svg[at..].to_owned());
                Ok(Enrolment {
                    secret: Sensitive::new(Secret::from(secret).to_base32()),
                    qr_svg: Sensitive::new(svg),
                })
            })
            .await
    }

    /// Confirms the member's unconfirmed factor with its first code; the ten recovery codes come back, to be
    /// shown once. `Err(WrongCode)` for a wrong code (counted as a failure).
    pub async fn confirm_factor(
        &self,
        staff_id: &str,
        code: &str,
    ) -> AppResult<Result<Vec<Sensitive<String>>, FactorRefusal>> {
        let vault = self.vault.clone();
        let (id, code) = (staff_id.to_owned(), normalise(code));
        self.db
            .write(move |conn| -> AppResult<_> {
                let key = throttle_key(&id);
                if let Some(wait) = throttle::login_delay(conn, &key, now())? {
                    return Ok(Err(FactorRefusal::Throttled(wait)));
                }
                if state(conn, &id)? != FactorState::Unconfirmed
                    || take_totp(conn, &vault, &id, &code, unix_now())?.is_none()
                {
                    throttle::record_login_failure(conn, &key, now())?;
                    return Ok(Err(FactorRefusal::WrongCode));
                }
                throttle::clear_login_failures(conn, &key)?;
                diesel::update(staff_factors::table.find(&id))
                    .set(staff_factors::confirmed_at.eq(Some(now())))
                    .execute(conn)?;
                diesel::delete(
                    staff_recovery_codes::table.filter(staff_recovery_codes::staff_id.eq(&id)),
                )
                .execute(conn)?;
                let codes: Vec<String> = (0..RECOVERY_CODES)
                    .map(|_| random_recovery_code())
                    .collect();
                for code in &codes {
                    diesel::insert_into(staff_recovery_codes::table)
                        .values((
                            staff_recovery_codes::code_hash.eq(hash_recovery_code(code)),
                            staff_recovery_codes::staff_id.eq(&id),
                        ))
                        .execute(conn)?;
                }
                Ok(Ok(codes.into_iter().map(Sensitive::new).collect()))
            })
            .await
    }

    /// An admin resets a colleague's factor (audited): it and its recovery codes go, every session of the
    /// member ends, and their next sign-in enrols a new one.
    pub async fn reset_factor(
        &self,
        actor: &str,
        staff_id: &str,
        request_id: Option<String>,
    ) -> AppResult<()> {
        let reasons = ("staff_factor_reset", "second_factor_reset");
        self.change_member(actor, staff_id, request_id, reasons, |conn, id| {
            let found: i64 = staff::table.find(id).count().get_result(conn)?;
            diesel::delete(staff_factors::table.find(id)).execute(conn)?;
            diesel::delete(
                staff_recovery_codes::table.filter(staff_recovery_codes::staff_id.eq(id)),
            )
            .execute(conn)?;
            diesel::delete(console_sessions::table.filter(console_sessions::staff_id.eq(id)))
                .execute(conn)?;
            Ok(found as usize)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_typed_loosely_and_hashed_alike() {
        let code = random_recovery_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(
            hash_recovery_code(&code),
            hash_recovery_code(&format!(" {} ", code.to_uppercase().replace('-', " ")))
        );
        assert_ne!(
            hash_recovery_code(&code),
            hash_recovery_code(&random_recovery_code())
        );
    }

    #[test]
    fn the_rfc_6238_vector_checks_and_names_its_step() {
        // RFC 6238, appendix B: SHA-1, the ASCII secret "12345678901234567890", T = 59 → 94287082 (8 digits);
        // six digits are its last six.
        let totp = totp(b"12345678901234567890", "test").unwrap();
        assert_eq!(totp.check("287082", 59), Some(1));
        assert_eq!(totp.check("287083", 59), None);
    }
}
