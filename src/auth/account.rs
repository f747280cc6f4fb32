//! Login, refresh, logout and sessions; password reset; the profile; the GDPR export and erasure.

use std::net::IpAddr;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::login::{Account, AccountStore, password_login};
use super::sessions::{self, Factors, Issued, Refreshed, SessionRow, now};
use super::signup::{self, PendingText, check_phone_quota, customer_field, record_text, started};
use super::{Identity, LOGIN, PASSWORD_RESET, VerificationStarted, devices, otp};
use crate::auth::claims::Audience;
use crate::config::SecondFactorPolicy;
use crate::crypto::IndexKind;
use crate::db::DbConnection;
use crate::db::schema::{customers, security_events, verifications};
use crate::domain::{Email, NewPassword, Phone, Sensitive, mask_e164, mask_email};
use crate::error::{AppError, AppResult, Problem};
use crate::notify::outbox::{self, Notification};
use crate::vault::Opened;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogoutScope {
    Local,
    Others,
    Global,
}

#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: NaiveDateTime,
    pub client: String,
    pub current: bool,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub id: String,
    pub name: Option<Sensitive<String>>,
    pub phone_masked: Option<String>,
    pub email_masked: Option<String>,
    pub created_at: NaiveDateTime,
}

/// A change to the profile: `Some(None)` clears a field, `None` leaves it.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub name: Option<Option<String>>,
    pub email: Option<Option<String>>,
}

#[derive(Debug)]
pub struct ExportedCustomer {
    pub id: String,
    pub phone: Option<Sensitive<String>>,
    pub name: Option<Sensitive<String>>,
    pub email: Option<Sensitive<String>>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub sessions: Vec<SessionInfo>,
    pub orders: Vec<crate::orders::ExportedOrder>,
    /// When staff revealed the customer's contact or an order's address, by the role of who did it.
    pub reveals: Vec<Reveal>,
    /// The security events of the customer's sessions (a reused refresh token), kind and time.
    pub security_events: Vec<(String, NaiveDateTime)>,
    /// The linked Apple and Google sign-ins, with the e-mail each gave.
    pub identities: Vec<super::platforms::LinkedIdentity>,
    pub passkeys: Vec<super::passkeys::PasskeyInfo>,
}

/// A reveal of the customer's personal data by staff, from the audit log, naming the role and not the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reveal {
    /// `contact` or `shipping_address`.
    pub what: &'static str,
    /// The order whose address was revealed.
    pub order_id: Option<String>,
    /// The staff member's role now (`clerk`, `manager`, `admin`).
    pub role: String,
    pub at: NaiveDateTime,
}

/// The reveals of `customer_id`'s contact and of their orders' addresses, oldest first.
fn reveals_of(conn: &mut DbConnection, customer_id: &str) -> QueryResult<Vec<Reveal>> {
    use crate::db::schema::{audit_log, orders, staff};
    let their_orders = orders::table
        .filter(orders::customer_id.eq(customer_id))
        .select(orders::id);
    let rows: Vec<(String, String, String, String, NaiveDateTime)> = audit_log::table
        .inner_join(staff::table.on(staff::id.eq(audit_log::staff_id)))
        .filter(
            audit_log::action
                .eq("reveal_customer_contact")
                .and(audit_log::target_kind.eq("customer"))
                .and(audit_log::target_id.eq(customer_id))
                .or(audit_log::action
                    .eq("reveal_shipping_address")
                    .and(audit_log::target_kind.eq("order"))
                    .and(audit_log::target_id.eq_any(their_orders))),
        )
        .order((audit_log::created_at, audit_log::id))
        .select((
            audit_log::action,
            audit_log::target_kind,
            audit_log::target_id,
            staff::role,
            audit_log::created_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(action, kind, target, role, at)| Reveal {
            what: if action == "reveal_customer_contact" {
                "contact"
            } else {
                "shipping_address"
            },
            order_id: (kind == "order").then_some(target),
            role,
            at,
        })
        .collect())
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = customers)]
struct CustomerRow {
    id: String,
    phone: Option<Vec<u8>>,
    name: Option<Vec<u8>>,
    email: Option<Vec<u8>>,
    password_hash: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    erased_at: Option<NaiveDateTime>,
}

/// What a right password came to.
#[derive(Debug)]
pub enum LoginOutcome {
    Signed(Issued),
    /// A code was texted to the phone: `verify_login` with it.
    SecondFactor(VerificationStarted),
}

enum Stage {
    Signed(Issued),
    Code(VerificationStarted, PendingText),
}

fn invalid_credentials() -> AppError {
    Problem::unauthorized(
        "invalid_credentials",
        "The phone number or the password is wrong.",
    )
    .into()
}

fn load_customer(conn: &mut DbConnection, id: &str) -> AppResult<CustomerRow> {
    let row: CustomerRow = customers::table
        .find(id)
        .select(CustomerRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(AppError::NotFound)?;
    if row.erased_at.is_some() {
        return Err(AppError::NotFound);
    }
    Ok(row)
}

impl Identity {
    fn open_customer(
        &self,
        conn: &mut DbConnection,
        id: &str,
        column: &str,
        value: &Option<Vec<u8>>,
    ) -> AppResult<Option<Sensitive<String>>> {
        Ok(match value {
            None => None,
            Some(sealed) => match self
                .vault
                .open(conn, id, customer_field(column, id), sealed)?
            {
                Opened::Value(v) => Some(v),
                Opened::Erased => None,
            },
        })
    }

    /// `POST /v1/auth/login`: the same 401 for a wrong password and an unknown phone. A right password on a
    /// device without a device token (by `CUSTOMER_SECOND_FACTOR`) gets no tokens: a code is texted to the
    /// phone, for `verify_login`.
    pub async fn login(
        &self,
        phone: &str,
        password: Sensitive<String>,
        device_token: Option<Sensitive<String>>,
        ip: IpAddr,
        client: String,
    ) -> AppResult<LoginOutcome> {
        let phone = self.parse_phone(phone)?;
        self.logins_per_ip.check(ip).map_err(|wait| {
            self.metrics.login_throttled("address");
            AppError::from(Problem::too_many(
                wait,
                "Too many logins from this address.",
            ))
        })?;
        let account_key = self.vault.blind_index(IndexKind::Phone, phone.e164());
        let this = self.clone();
        let store = AccountStore {
            find: |conn: &mut DbConnection, key: &[u8]| {
                customers::table
                    .filter(customers::phone_index.eq(key))
                    .filter(customers::erased_at.is_null())
                    .select((customers::id, customers::password_hash))
                    .first::<(String, Option<String>)>(conn)
                    .optional()
                    .map(|row| {
                        row.map(|(id, password_hash)| Account {
                            id,
                            role: None,
                            password_hash,
                        })
                    })
            },
            store_rehash: |conn: &mut DbConnection, id: &str, hash: String| {
                diesel::update(customers::table.find(id))
                    .set(customers::password_hash.eq(Some(hash)))
                    .execute(conn)
            },
        };
        let stage = password_login(
            &self.db,
            &self.metrics,
            &self.hasher,
            account_key,
            password,
            store,
            "The phone number or the password is wrong.",
            move |conn, key, account| {
                super::throttle::clear_login_failures(conn, key)?;
                let needs_code = match this.second_factor {
                    SecondFactorPolicy::Off => false,
                    SecondFactorPolicy::Always => true,
                    SecondFactorPolicy::NewDevice => match &device_token {
                        Some(token) => !devices::is_known(conn, &account.id, token.expose())?,
                        None => true,
                    },
                };
                if !needs_code {
                    return Ok(Stage::Signed(this.tokens.start(
                        conn,
                        Audience::Customer,
                        &account.id,
                        None,
                        &client,
                        Factors::PASSWORD,
                    )?));
                }
                let (started, text) = this.start_login_code(conn, &account.id, key, &phone)?;
                Ok(Stage::Code(started, text))
            },
        )
        .await?;
        match stage {
            Stage::Signed(issued) => Ok(LoginOutcome::Signed(issued)),
            Stage::Code(started, text) => {
                self.deliver(&started.verification_id.to_string(), text)
                    .await?;
                Ok(LoginOutcome::SecondFactor(started))
            }
        }
    }

    /// The sign-in code's verification, in the login's transaction: texted once it has committed.
    fn start_login_code(
        &self,
        conn: &mut DbConnection,
        customer: &str,
        phone_index: &[u8],
        phone: &Phone,
    ) -> AppResult<(VerificationStarted, PendingText)> {
        let id = uuid::Uuid::new_v4();
        let vid = id.to_string();
        let now = now();
        check_phone_quota(conn, phone_index, now)?;
        let code = otp::generate_code();
        let sealed = self
            .vault
            .seal(conn, customer, signup::field("phone", &vid), phone.e164())?;
        signup::insert_verification(
            conn,
            signup::NewVerification {
                id: &vid,
                purpose: LOGIN,
                phone_index,
                person_id: customer,
                phone: Some(sealed),
                name: None,
                password_hash: None,
                code_hash: Some(otp::code_hash(&self.pepper, &vid, LOGIN, code.expose())),
            },
            now,
        )?;
        record_text(conn, phone_index, now)?;
        let text = PendingText {
            phone: phone.clone(),
            body: self.code_text(LOGIN, code.expose()),
        };
        Ok((signup::started(id), text))
    }

    /// `POST /v1/auth/login/verify`: the texted sign-in code; the session starts and the device is
    /// remembered.
    pub async fn verify_login(
        &self,
        verification_id: &str,
        code: &str,
        client: String,
    ) -> AppResult<Issued> {
        let this = self.clone();
        let (vid, code) = (verification_id.to_owned(), code.to_owned());
        self.db
            .write(move |conn| -> AppResult<Result<Issued, AppError>> {
                let row = match signup::check_code(conn, &this, &vid, LOGIN, &code)? {
                    Ok(row) => row,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                load_customer(conn, &row.person_id)?;
                diesel::update(verifications::table.find(&row.id))
                    .set(verifications::phone.eq(None::<Vec<u8>>))
                    .execute(conn)?;
                let mut issued = this.tokens.start(
                    conn,
                    Audience::Customer,
                    &row.person_id,
                    None,
                    &client,
                    Factors::PASSWORD_AND_SMS,
                )?;
                issued.device_token = Some(devices::remember(conn, &row.person_id)?);
                Ok(Ok(issued))
            })
            .await?
    }

    /// `POST /v1/auth/refresh`.
    pub async fn refresh(&self, token: Sensitive<String>) -> AppResult<Issued> {
        let this = self.clone();
        let outcome = self
            .db
            .write(move |conn| {
                this.tokens
                    .refresh(conn, Audience::Customer, token.expose())
            })
            .await?;
        match outcome {
            Refreshed::Pair(issued) => Ok(issued),
            Refreshed::Reused { session_id } => {
                self.revocations.ended_here([&session_id]);
                self.metrics.refresh_token_reuse("customer");
                tracing::warn!(session_id, "refresh token reused: session ended");
                Err(Problem::unauthorized(
                    "refresh_token_reused",
                    "This refresh token was used already; the session has ended. Log in again.",
                )
                .into())
            }
        }
    }

    pub async fn logout(
        &self,
        customer_id: &str,
        session_id: &str,
        scope: LogoutScope,
    ) -> AppResult<()> {
        let (subject, sid) = (customer_id.to_owned(), session_id.to_owned());
        let ended = self
            .db
            .write(move |conn| -> AppResult<Vec<String>> {
                Ok(match scope {
                    LogoutScope::Local => {
                        sessions::end_session(conn, &sid, "logout")?;
                        vec![sid.clone()]
                    }
                    LogoutScope::Others => {
                        sessions::end_sessions_of(conn, &subject, Some(&sid), "logout_others")?
                    }
                    LogoutScope::Global => {
                        sessions::end_sessions_of(conn, &subject, None, "logout_global")?
                    }
                })
            })
            .await?;
        self.revocations.ended_here(&ended);
        Ok(())
    }

    pub async fn sessions(&self, customer_id: &str, current: &str) -> AppResult<Vec<SessionInfo>> {
        let (subject, current) = (customer_id.to_owned(), current.to_owned());
        let rows = self
            .db
            .run(move |conn| -> AppResult<Vec<SessionRow>> {
                Ok(sessions::live_sessions(conn, &subject, Audience::Customer)?)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| session_info(r, &current))
            .collect())
    }

    /// Ends one of the customer's own sessions; another customer's is a 404.
    pub async fn end_own_session(&self, customer_id: &str, session_id: &str) -> AppResult<()> {
        let (subject, sid) = (customer_id.to_owned(), session_id.to_owned());
        let ended = self
            .db
            .write(move |conn| -> AppResult<String> {
                let owner: Option<String> = crate::db::schema::sessions::table
                    .find(&sid)
                    .filter(crate::db::schema::sessions::audience.eq("customer"))
                    .select(crate::db::schema::sessions::subject_id)
                    .first(conn)
                    .optional()?;
                if owner.as_deref() != Some(subject.as_str()) {
                    return Err(AppError::NotFound);
                }
                sessions::end_session(conn, &sid, "ended_by_customer")?;
                Ok(sid.clone())
            })
            .await?;
        self.revocations.ended_here([&ended]);
        Ok(())
    }

    /// `POST /v1/auth/password-reset`: 202 whether or not the phone has an account.
    pub async fn start_password_reset(
        &self,
        phone: &str,
        ip: IpAddr,
    ) -> AppResult<VerificationStarted> {
        let phone = self.parse_phone(phone)?;
        self.limit_texts(ip)?;
        let id = uuid::Uuid::new_v4();
        let code = otp::generate_code();
        let this = self.clone();
        let (vid, p, c) = (id.to_string(), phone.clone(), code.clone());
        let known = self
            .db
            .write(move |conn| signup::insert_reset(conn, &this, &vid, &p, c.expose()))
            .await?;
        if known {
            // Sent in the background, so an unknown phone and a known one answer alike and at the same
            // speed; a text that did not go out is asked for again with a resend.
            let this = self.clone();
            let body = self.code_text(PASSWORD_RESET, code.expose());
            let vid = id.to_string();
            tokio::spawn(async move {
                let _ = this.deliver(&vid, PendingText { phone, body }).await;
            });
        }
        Ok(started(id))
    }

    /// `POST /v1/auth/password-reset/verify`: a new password, and every session ends.
    pub async fn finish_password_reset(
        &self,
        verification_id: &str,
        code: &str,
        new_password: Sensitive<String>,
    ) -> AppResult<()> {
        let password = NewPassword::parse(new_password.expose(), &[])
            .map_err(|e| Problem::invalid("weak_password", "new_password", e.to_string()))?;
        let hash = self
            .hasher
            .hash(Sensitive::new(password.expose().to_owned()))
            .await?;
        let this = self.clone();
        let (vid, code) = (verification_id.to_owned(), code.to_owned());
        let ended = self
            .db
            .write(move |conn| -> AppResult<Result<Vec<String>, AppError>> {
                let row = match signup::check_code(conn, &this, &vid, PASSWORD_RESET, &code)? {
                    Ok(row) => row,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                let customer_id = row.person_id;
                load_customer(conn, &customer_id)?;
                diesel::update(customers::table.find(&customer_id))
                    .set((
                        customers::password_hash.eq(Some(&hash)),
                        customers::updated_at.eq(now()),
                    ))
                    .execute(conn)?;
                diesel::insert_into(crate::db::schema::security_events::table)
                    .values((
                        crate::db::schema::security_events::id.eq(uuid::Uuid::now_v7().to_string()),
                        crate::db::schema::security_events::subject_id.eq(&customer_id),
                        crate::db::schema::security_events::kind.eq("password_changed"),
                        crate::db::schema::security_events::created_at.eq(now()),
                    ))
                    .execute(conn)?;
                // Committed with the new password, or not at all; sent only if an e-mail is known.
                outbox::enqueue(
                    conn,
                    Notification::PasswordChanged {
                        customer_id: customer_id.clone(),
                    },
                )?;
                devices::forget_all(conn, &customer_id)?;
                Ok(Ok(sessions::end_sessions_of(
                    conn,
                    &customer_id,
                    None,
                    "password_reset",
                )?))
            })
            .await??;
        self.revocations.ended_here(&ended);
        Ok(())
    }

    pub async fn profile(&self, customer_id: &str) -> AppResult<Profile> {
        let this = self.clone();
        let id = customer_id.to_owned();
        self.db
            .run(move |conn| -> AppResult<Profile> {
                let row = load_customer(conn, &id)?;
                let phone = this.open_customer(conn, &id, "phone", &row.phone)?;
                let name = this.open_customer(conn, &id, "name", &row.name)?;
                let email = this.open_customer(conn, &id, "email", &row.email)?;
                Ok(Profile {
                    id,
                    name,
                    phone_masked: phone.map(|p| mask_e164(p.expose())),
                    email_masked: email.map(|e| mask_email(e.expose())),
                    created_at: row.created_at,
                })
            })
            .await
    }

    pub async fn update_profile(
        &self,
        customer_id: &str,
        change: ProfileChange,
    ) -> AppResult<Profile> {
        let name = match change.name {
            Some(Some(n)) => {
                let n = n.trim().to_owned();
                if n.is_empty()
                    || n.chars().count() > signup::MAX_NAME_CHARS
                    || n.chars().any(char::is_control)
                {
                    return Err(Problem::invalid(
                        "invalid_name",
                        "name",
                        "A name has 1 to 100 characters.",
                    )
                    .into());
                }
                Some(Some(n))
            }
            other => other,
        };
        let email = match change.email {
            Some(Some(e)) => Some(Some(Email::parse(&e).map_err(|_| {
                Problem::invalid("invalid_email", "email", "Not a valid e-mail address.")
            })?)),
            Some(None) => Some(None),
            None => None,
        };
        let this = self.clone();
        let id = customer_id.to_owned();
        self.db
            .write(move |conn| -> AppResult<()> {
                load_customer(conn, &id)?;
                if let Some(name) = &name {
                    let sealed = match name {
                        Some(n) => {
                            Some(this.vault.seal(conn, &id, customer_field("name", &id), n)?)
                        }
                        None => None,
                    };
                    diesel::update(customers::table.find(&id))
                        .set(customers::name.eq(sealed))
                        .execute(conn)?;
                }
                if let Some(email) = &email {
                    let (sealed, index) = match email {
                        Some(e) => (
                            Some(this.vault.seal(
                                conn,
                                &id,
                                customer_field("email", &id),
                                e.as_str(),
                            )?),
                            Some(this.vault.blind_index(IndexKind::Email, e.as_str())),
                        ),
                        None => (None, None),
                    };
                    diesel::update(customers::table.find(&id))
                        .set((
                            customers::email.eq(sealed),
                            customers::email_index.eq(index),
                        ))
                        .execute(conn)?;
                }
                diesel::update(customers::table.find(&id))
                    .set(customers::updated_at.eq(now()))
                    .execute(conn)?;
                Ok(())
            })
            .await?;
        self.profile(customer_id).await
    }

    /// `GET /v1/me/export`: every personal value decrypted; needs a login within the last 5 minutes.
    pub async fn export(
        &self,
        customer_id: &str,
        session_id: &str,
        auth_time: i64,
    ) -> AppResult<ExportedCustomer> {
        super::recent_login(auth_time, "export your data")?;
        let identities = self.identities(customer_id).await?;
        let passkeys = self.passkeys(customer_id).await?;
        let this = self.clone();
        let (id, current) = (customer_id.to_owned(), session_id.to_owned());
        self.db
            .run(move |conn| -> AppResult<ExportedCustomer> {
                let row = load_customer(conn, &id)?;
                let sessions = sessions::live_sessions(conn, &id, Audience::Customer)?
                    .into_iter()
                    .map(|s| session_info(s, &current))
                    .collect();
                let security_events = security_events::table
                    .filter(security_events::subject_id.eq(&id))
                    .order((security_events::created_at, security_events::id))
                    .select((security_events::kind, security_events::created_at))
                    .load(conn)?;
                Ok(ExportedCustomer {
                    orders: crate::orders::read::all_of_customer(conn, &this.vault, &id)?,
                    reveals: reveals_of(conn, &id)?,
                    security_events,
                    phone: this.open_customer(conn, &id, "phone", &row.phone)?,
                    name: this.open_customer(conn, &id, "name", &row.name)?,
                    email: this.open_customer(conn, &id, "email", &row.email)?,
                    id: row.id,
                    created_at: row.created_at,
                    updated_at: row.updated_at,
                    sessions,
                    identities,
                    passkeys,
                })
            })
            .await
    }

    /// `DELETE /v1/me`: erasure. Every session ends, the data key is destroyed (crypto-shredding), the blind
    /// indexes go; the row stays, with no personal value, for the orders that refer to it. An account with a
    /// password needs it; one without (a platform sign-in's) needs a sign-in within the last 5 minutes.
    pub async fn erase(
        &self,
        customer_id: &str,
        password: Option<Sensitive<String>>,
        auth_time: i64,
    ) -> AppResult<()> {
        let id = customer_id.to_owned();
        let stored = self
            .db
            .run(move |conn| -> AppResult<Option<String>> {
                Ok(load_customer(conn, &id)?.password_hash)
            })
            .await?;
        match (stored, password) {
            (None, _) => super::recent_login(auth_time, "erase the account")?,
            (stored, password) => {
                let password = password.unwrap_or_else(|| Sensitive::new(String::new()));
                if !self.hasher.verify(password, stored).await?.matches {
                    return Err(invalid_credentials());
                }
            }
        }
        self.erase_customer(customer_id).await
    }

    /// Erasure without the password check, for an admin acting on the customer's request.
    pub async fn erase_customer(&self, customer_id: &str) -> AppResult<()> {
        let this = self.clone();
        let id = customer_id.to_owned();
        let ended = self
            .db
            .write(move |conn| -> AppResult<Vec<String>> {
                load_customer(conn, &id)?;
                let ended = sessions::end_sessions_of(conn, &id, None, "erased")?;
                crate::orders::state::cancel_payable_orders_of(
                    conn,
                    &id,
                    "the customer was erased",
                )?;
                this.vault.shred(conn, &id)?;
                {
                    use crate::db::schema::{
                        identities, passkey_ceremonies, passkeys, verifications,
                    };
                    diesel::delete(identities::table.filter(identities::customer_id.eq(&id)))
                        .execute(conn)?;
                    diesel::delete(passkeys::table.filter(passkeys::customer_id.eq(&id)))
                        .execute(conn)?;
                    devices::forget_all(conn, &id)?;
                    diesel::delete(
                        passkey_ceremonies::table.filter(passkey_ceremonies::customer_id.eq(&id)),
                    )
                    .execute(conn)?;
                    diesel::delete(verifications::table.filter(verifications::person_id.eq(&id)))
                        .execute(conn)?;
                }
                // Every other trace keyed by the phone's blind index goes too.
                let phone_index: Option<Vec<u8>> = customers::table
                    .find(&id)
                    .select(customers::phone_index)
                    .first(conn)?;
                if let Some(index) = phone_index {
                    use crate::db::schema::{login_failures, sms_sends, verifications};
                    diesel::delete(
                        verifications::table.filter(verifications::phone_index.eq(&index)),
                    )
                    .execute(conn)?;
                    diesel::delete(sms_sends::table.filter(sms_sends::phone_index.eq(&index)))
                        .execute(conn)?;
                    diesel::delete(
                        login_failures::table.filter(login_failures::account_key.eq(&index)),
                    )
                    .execute(conn)?;
                }
                diesel::update(customers::table.find(&id))
                    .set((
                        customers::phone_index.eq(None::<Vec<u8>>),
                        customers::email_index.eq(None::<Vec<u8>>),
                        customers::phone.eq(None::<Vec<u8>>),
                        customers::name.eq(None::<Vec<u8>>),
                        customers::email.eq(None::<Vec<u8>>),
                        customers::password_hash.eq(None::<String>),
                        customers::erased_at.eq(Some(now())),
                        customers::updated_at.eq(now()),
                    ))
                    .execute(conn)?;
                Ok(ended)
            })
            .await?;
        self.revocations.ended_here(&ended);
        Ok(())
    }
}

fn session_info(row: SessionRow, current: &str) -> SessionInfo {
    SessionInfo {
        current: row.id == current,
        id: row.id,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        client: row.client,
    }
}
