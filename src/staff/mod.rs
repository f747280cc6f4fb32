//! Store staff: accounts made from the command line, login with the session machinery of customers (audience
//! `staff`, 12 h absolute, 1 h idle), the audit log, and the personal-data reveals staff may make.

pub mod console;
pub mod factor;
pub mod invitations;
pub mod matrix;
pub mod orders;

use std::fmt;
use std::net::IpAddr;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::auth::claims::Audience;
use crate::auth::login::{Account, AccountStore, password_login};
use crate::auth::passwords::Hasher;
use crate::auth::sessions::{self, Factors, Issued, Refreshed, TokenIssuer, now};
use crate::auth::throttle;
use crate::auth::{Identity, revocations::Revocations};
use crate::crypto::IndexKind;
use crate::db::schema::{audit_log, customers, staff};
use crate::db::{Db, DbConnection, DbError};
use crate::domain::{Email, NewPassword, Sensitive, mask_email};
use crate::error::{AppError, AppResult, Problem};
use crate::limits::AddressLimiter;
use crate::telemetry::Metrics;
use crate::vault::{Field, Opened, Vault};

/// Staff roles; they nest: admin ⊇ manager ⊇ clerk.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Clerk,
    Manager,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "clerk" => Some(Self::Clerk),
            "manager" => Some(Self::Manager),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clerk => "clerk",
            Self::Manager => "manager",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A staff member as listed: never the e-mail in clear.
#[derive(Debug, Clone)]
pub struct StaffMember {
    pub id: String,
    pub email_masked: String,
    pub role: Role,
    pub created_at: NaiveDateTime,
    pub disabled_at: Option<NaiveDateTime>,
}

/// What an audit entry says: who did what to which record, and when. Never a value.
#[derive(Debug, Clone, Queryable)]
pub struct AuditEntry {
    pub id: String,
    pub staff_id: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub request_id: Option<String>,
    pub created_at: NaiveDateTime,
}

/// Which audit entries to list; `None` leaves a part open.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub staff_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
}

/// A customer's contact, revealed to an admin.
#[derive(Debug)]
pub struct CustomerContact {
    pub customer_id: String,
    pub phone: Option<Sensitive<String>>,
    pub name: Option<Sensitive<String>>,
    pub email: Option<Sensitive<String>>,
}

type StaffRow = (
    String,
    Vec<u8>,
    String,
    NaiveDateTime,
    Option<NaiveDateTime>,
);
/// A customer's sealed phone, name and e-mail.
type SealedContact = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

fn email_field(staff_id: &str) -> Field<'_> {
    Field {
        table: "staff",
        column: "email",
        row_id: staff_id,
    }
}

fn customer_field<'a>(column: &'a str, customer_id: &'a str) -> Field<'a> {
    Field {
        table: "customers",
        column,
        row_id: customer_id,
    }
}

/// A new member's password, by the customers' policy (and not their e-mail or its local part).
pub(crate) fn member_password(
    email: &Email,
    password: &Sensitive<String>,
) -> Result<NewPassword, String> {
    let local = email.as_str().split('@').next().unwrap_or_default();
    NewPassword::parse(password.expose(), &[email.as_str(), local]).map_err(|e| e.to_string())
}

/// Makes a member (their data key, the sealed e-mail and its blind index) in the caller's transaction; `None`
/// when a member with this e-mail exists already.
pub(crate) fn insert_member(
    conn: &mut DbConnection,
    vault: &Vault,
    email: &Email,
    role: Role,
    password_hash: &str,
) -> AppResult<Option<String>> {
    let index = vault.blind_index(IndexKind::Email, email.as_str());
    let taken: i64 = staff::table
        .filter(staff::email_index.eq(&index))
        .count()
        .get_result(conn)?;
    if taken > 0 {
        return Ok(None);
    }
    let id = uuid::Uuid::now_v7().to_string();
    vault.create_data_key(conn, &id)?;
    let sealed = vault.seal(conn, &id, email_field(&id), email.as_str())?;
    diesel::insert_into(staff::table)
        .values((
            staff::id.eq(&id),
            staff::email_index.eq(&index),
            staff::email.eq(&sealed),
            staff::role.eq(role.as_str()),
            staff::password_hash.eq(password_hash),
            staff::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(Some(id))
}

/// Writes an audit entry in the caller's transaction.
pub fn audit(
    conn: &mut DbConnection,
    staff_id: &str,
    action: &str,
    target: (&str, &str),
    request_id: Option<&str>,
) -> QueryResult<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::id.eq(uuid::Uuid::now_v7().to_string()),
            audit_log::staff_id.eq(staff_id),
            audit_log::action.eq(action),
            audit_log::target_kind.eq(target.0),
            audit_log::target_id.eq(target.1),
            audit_log::request_id.eq(request_id),
            audit_log::created_at.eq(now()),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The staff service.
#[derive(Clone)]
pub struct Staff {
    db: Db,
    vault: Vault,
    hasher: Hasher,
    tokens: TokenIssuer,
    revocations: Revocations,
    logins_per_ip: AddressLimiter,
    metrics: Metrics,
    clerks_need_factor: bool,
}

impl fmt::Debug for Staff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Staff")
    }
}

impl Staff {
    pub fn new(db: Db, vault: Vault, identity: &Identity, clerks_need_factor: bool) -> Self {
        Self {
            db,
            vault,
            hasher: identity.hasher().clone(),
            tokens: identity.tokens.clone(),
            revocations: identity.revocations.clone(),
            logins_per_ip: throttle::logins_per_address(),
            metrics: identity.metrics.clone(),
            clerks_need_factor,
        }
    }

    /// `shopd staff add`: the same password policy as customers.
    pub async fn add(
        &self,
        email: &str,
        role: Role,
        password: Sensitive<String>,
    ) -> Result<String, String> {
        let email = Email::parse(email).map_err(|e| format!("--email: {e}"))?;
        let password = member_password(&email, &password).map_err(|e| format!("password: {e}"))?;
        let hash = self
            .hasher
            .hash(Sensitive::new(password.expose().to_owned()))
            .await
            .map_err(|e| e.to_string())?;
        let vault = self.vault.clone();
        self.db
            .write(move |conn| -> AppResult<Option<String>> {
                insert_member(conn, &vault, &email, role, &hash)
            })
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "a staff member with this e-mail exists already".to_owned())
    }

    /// `shopd staff disable`: the account is disabled and every session of it ends at once.
    pub async fn disable(&self, email: &str) -> Result<usize, String> {
        let email = Email::parse(email).map_err(|e| format!("{e}"))?;
        let index = self.vault.blind_index(IndexKind::Email, email.as_str());
        let ended = self
            .db
            .write(move |conn| -> AppResult<Option<Vec<String>>> {
                let id: Option<String> = staff::table
                    .filter(staff::email_index.eq(&index))
                    .select(staff::id)
                    .first(conn)
                    .optional()?;
                let Some(id) = id else { return Ok(None) };
                diesel::update(staff::table.find(&id).filter(staff::disabled_at.is_null()))
                    .set(staff::disabled_at.eq(Some(now())))
                    .execute(conn)?;
                Ok(Some(sessions::end_sessions_of(
                    conn,
                    &id,
                    None,
                    "staff_disabled",
                )?))
            })
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no staff member has this e-mail".to_owned())?;
        self.revocations.ended_here(&ended);
        Ok(ended.len())
    }

    /// An admin's audited change to a colleague that ends every session of theirs, in one transaction:
    /// `change` makes it and says how many rows it found (none is `NotFound`); `action` is the audit entry's,
    /// `end_reason` the sessions'.
    pub(crate) async fn change_member(
        &self,
        actor: &str,
        staff_id: &str,
        request_id: Option<String>,
        (action, end_reason): (&'static str, &'static str),
        mut change: impl FnMut(&mut DbConnection, &str) -> QueryResult<usize> + Send + 'static,
    ) -> AppResult<()> {
        let (actor, id) = (actor.to_owned(), staff_id.to_owned());
        let ended = self
            .db
            .write(move |conn| -> AppResult<Vec<String>> {
                if change(conn, &id)? == 0 {
                    return Err(AppError::NotFound);
                }
                audit(conn, &actor, action, ("staff", &id), request_id.as_deref())?;
                Ok(sessions::end_sessions_of(conn, &id, None, end_reason)?)
            })
            .await?;
        self.revocations.ended_here(&ended);
        Ok(())
    }

    /// An admin disables a colleague from the console (audited): every session of theirs ends at once.
    pub async fn disable_member(
        &self,
        actor: &str,
        staff_id: &str,
        request_id: Option<String>,
    ) -> AppResult<()> {
        let reasons = ("staff_disabled", "staff_disabled");
        self.change_member(actor, staff_id, request_id, reasons, |conn, id| {
            diesel::update(staff::table.find(id))
                .set(staff::disabled_at.eq(Some(now())))
                .execute(conn)
        })
        .await
    }

    /// An admin changes a colleague's role (audited). Every session of theirs ends: a token names the role it
    /// was issued with, so the new role counts from their next sign-in, and a demoted member keeps nothing.
    pub async fn change_role(
        &self,
        actor: &str,
        staff_id: &str,
        role: Role,
        request_id: Option<String>,
    ) -> AppResult<()> {
        let reasons = ("staff_role_changed", "role_changed");
        self.change_member(actor, staff_id, request_id, reasons, move |conn, id| {
            diesel::update(staff::table.find(id))
                .set(staff::role.eq(role.as_str()))
                .execute(conn)
        })
        .await
    }

    pub async fn list(&self) -> AppResult<Vec<StaffMember>> {
        let vault = self.vault.clone();
        self.db
            .run(move |conn| -> AppResult<Vec<StaffMember>> {
                let rows: Vec<StaffRow> = staff::table
                    .order(staff::created_at)
                    .select((
                        staff::id,
                        staff::email,
                        staff::role,
                        staff::created_at,
                        staff::disabled_at,
                    ))
                    .load(conn)?;
                rows.into_iter()
                    .map(|(id, sealed, role, created_at, disabled_at)| {
                        let email_masked = match vault.open(conn, &id, email_field(&id), &sealed)? {
                            Opened::Value(v) => mask_email(v.expose()),
                            Opened::Erased => "[erased]".to_owned(),
                        };
                        Ok(StaffMember {
                            role: Role::parse(&role).unwrap_or(Role::Clerk),
                            id,
                            email_masked,
                            created_at,
                            disabled_at,
                        })
                    })
                    .collect()
            })
            .await
    }

    /// The staff JSON API's sign-in: the password, then the second factor's `code` when the member has one; a
    /// member whose role needs a factor and has none enrols in the console first.
    pub async fn login(
        &self,
        email: &str,
        password: Sensitive<String>,
        code: Option<Sensitive<String>>,
        ip: IpAddr,
        client: String,
    ) -> AppResult<Issued> {
        let tokens = self.tokens.clone();
        let (vault, clerks_need_factor) = (self.vault.clone(), self.clerks_need_factor);
        self.password_step(email, password, ip, move |conn, key, account| {
            let role = account.role.as_deref().and_then(Role::parse);
            let needed = factor::needed(role, clerks_need_factor);
            let code = code.as_ref().map(|c| c.expose().as_str());
            let with_code = match factor::second_factor(conn, &vault, &account.id, needed, code)? {
                Ok(with_code) => with_code,
                Err(refusal) => return Ok(Err(refusal)),
            };
            crate::auth::throttle::clear_login_failures(conn, key)?;
            Ok(Ok(tokens.start(
                conn,
                Audience::Staff,
                &account.id,
                account.role.as_deref(),
                &client,
                if with_code {
                    Factors::PASSWORD_AND_TOTP
                } else {
                    Factors::PASSWORD
                },
            )?))
        })
        .await?
        .map_err(AppError::from)
    }

    /// The password step of a sign-in, for the JSON API and the console: the address throttle, then
    /// `password_login`, whose `then` runs in the write transaction of a right password. A `FactorRefusal`
    /// from `then` commits (the failure of a wrong code is recorded), and is the caller's to answer.
    pub(crate) async fn password_step<T: Send + 'static>(
        &self,
        email: &str,
        password: Sensitive<String>,
        ip: IpAddr,
        then: impl FnMut(
            &mut DbConnection,
            &[u8],
            &Account,
        ) -> AppResult<Result<T, factor::FactorRefusal>>
        + Send
        + 'static,
    ) -> AppResult<Result<T, factor::FactorRefusal>> {
        self.logins_per_ip.check(ip).map_err(|wait| {
            self.metrics.login_throttled("address");
            AppError::from(Problem::too_many(
                wait,
                "Too many logins from this address.",
            ))
        })?;
        let account_key = self.vault.blind_index(IndexKind::Email, email);
        let store = AccountStore {
            find: |conn: &mut DbConnection, key: &[u8]| {
                staff::table
                    .filter(staff::email_index.eq(key))
                    .filter(staff::disabled_at.is_null())
                    .select((staff::id, staff::role, staff::password_hash))
                    .first::<(String, String, String)>(conn)
                    .optional()
                    .map(|row| {
                        row.map(|(id, role, hash)| Account {
                            id,
                            role: Some(role),
                            // An invited member without a password yet: checked against the dummy hash.
                            password_hash: (hash != invitations::NO_PASSWORD).then_some(hash),
                        })
                    })
            },
            store_rehash: |conn: &mut DbConnection, id: &str, hash: String| {
                diesel::update(staff::table.find(id))
                    .set(staff::password_hash.eq(hash))
                    .execute(conn)
            },
        };
        password_login(
            &self.db,
            &self.metrics,
            &self.hasher,
            account_key,
            password,
            store,
            "The e-mail or the password is wrong.",
            then,
        )
        .await
    }

    pub async fn refresh(&self, token: Sensitive<String>) -> AppResult<Issued> {
        let tokens = self.tokens.clone();
        let outcome = self
            .db
            .write(move |conn| -> AppResult<Refreshed> {
                let outcome = tokens.refresh(conn, Audience::Staff, token.expose())?;
                if let Refreshed::Pair(issued) = &outcome {
                    let disabled: Option<NaiveDateTime> = staff::table
                        .find(&issued.subject_id)
                        .select(staff::disabled_at)
                        .first(conn)?;
                    if disabled.is_some() {
                        return Err(Problem::unauthorized(
                            "session_ended",
                            "The account is disabled.",
                        )
                        .into());
                    }
                }
                Ok(outcome)
            })
            .await?;
        match outcome {
            Refreshed::Pair(issued) => Ok(issued),
            Refreshed::Reused { session_id } => {
                self.revocations.ended_here([&session_id]);
                self.metrics.refresh_token_reuse("staff");
                Err(Problem::unauthorized(
                    "refresh_token_reused",
                    "This refresh token was used already; log in again.",
                )
                .into())
            }
        }
    }

    pub async fn logout(&self, session_id: &str) -> AppResult<()> {
        let sid = session_id.to_owned();
        self.db
            .write(move |conn| -> AppResult<bool> {
                Ok(sessions::end_session(conn, &sid, "logout")?)
            })
            .await?;
        self.revocations.ended_here([&session_id.to_owned()]);
        Ok(())
    }

    /// Whether a staff session is live and its member enabled: read from the database on every staff
    /// request, so a disabled member's token is refused on the next request, whichever instance serves it.
    pub async fn session_is_live(&self, session_id: &str, staff_id: &str) -> AppResult<bool> {
        let (sid, id) = (session_id.to_owned(), staff_id.to_owned());
        self.db
            .run(move |conn| -> AppResult<bool> {
                let enabled: i64 = staff::table
                    .find(&id)
                    .filter(staff::disabled_at.is_null())
                    .count()
                    .get_result(conn)?;
                Ok(enabled == 1
                    && sessions::session_is_live(conn, &sid, Audience::Staff)
                        .map_err(DbError::from)?)
            })
            .await
    }

    pub async fn audit_log(
        &self,
        limit: i64,
        before: Option<String>,
    ) -> AppResult<Vec<AuditEntry>> {
        self.audit_entries(limit, before, AuditFilter::default())
            .await
    }

    /// The audit log, newest first, of one member, one action or a span of days when given.
    pub async fn audit_entries(
        &self,
        limit: i64,
        before: Option<String>,
        filter: AuditFilter,
    ) -> AppResult<Vec<AuditEntry>> {
        self.db
            .run(move |conn| -> AppResult<Vec<AuditEntry>> {
                let mut query = audit_log::table
                    .order(audit_log::id.desc())
                    .limit(limit)
                    .select((
                        audit_log::id,
                        audit_log::staff_id,
                        audit_log::action,
                        audit_log::target_kind,
                        audit_log::target_id,
                        audit_log::request_id,
                        audit_log::created_at,
                    ))
                    .into_boxed();
                if let Some(before) = before {
                    query = query.filter(audit_log::id.lt(before));
                }
                if let Some(staff_id) = filter.staff_id {
                    query = query.filter(audit_log::staff_id.eq(staff_id));
                }
                if let Some(action) = filter.action {
                    query = query.filter(audit_log::action.eq(action));
                }
                if let Some(since) = filter.since {
                    query = query.filter(audit_log::created_at.ge(since));
                }
                if let Some(until) = filter.until {
                    query = query.filter(audit_log::created_at.lt(until));
                }
                Ok(query.load(conn)?)
            })
            .await
    }

    /// An admin reveals a customer's contact; the reveal is audited in the same transaction.
    pub async fn customer_contact(
        &self,
        actor: &str,
        customer_id: &str,
        request_id: Option<String>,
    ) -> AppResult<CustomerContact> {
        let vault = self.vault.clone();
        let (actor, id) = (actor.to_owned(), customer_id.to_owned());
        self.db
            .write(move |conn| -> AppResult<CustomerContact> {
                let row: Option<SealedContact> = customers::table
                    .find(&id)
                    .select((customers::phone, customers::name, customers::email))
                    .first(conn)
                    .optional()?;
                let (phone, name, email) = row.ok_or(AppError::NotFound)?;
                let mut open = |column: &str,
                                value: Option<Vec<u8>>|
                 -> AppResult<Option<Sensitive<String>>> {
                    Ok(match value {
                        None => None,
                        Some(sealed) => {
                            match vault.open(conn, &id, customer_field(column, &id), &sealed)? {
                                Opened::Value(v) => Some(v),
                                Opened::Erased => None,
                            }
                        }
                    })
                };
                let contact = CustomerContact {
                    phone: open("phone", phone)?,
                    name: open("name", name)?,
                    email: open("email", email)?,
                    customer_id: id.clone(),
                };
                audit(
                    conn,
                    &actor,
                    "reveal_customer_contact",
                    ("customer", &id),
                    request_id.as_deref(),
                )?;
                Ok(contact)
            })
            .await
    }

    /// An admin erases a customer on their request: the same effect as `DELETE /v1/me`, audited.
    pub async fn erase_customer(
        &self,
        identity: &Identity,
        actor: &str,
        customer_id: &str,
        request_id: Option<String>,
    ) -> AppResult<()> {
        // Audited first: an erasure that then fails still shows who asked for it.
        let (actor, id) = (actor.to_owned(), customer_id.to_owned());
        let exists = self
            .db
            .write(move |conn| -> AppResult<bool> {
                let found: i64 = customers::table
                    .find(&id)
                    .filter(customers::erased_at.is_null())
                    .count()
                    .get_result(conn)?;
                if found == 1 {
                    audit(
                        conn,
                        &actor,
                        "erase_customer",
                        ("customer", &id),
                        request_id.as_deref(),
                    )?;
                }
                Ok(found == 1)
            })
            .await?;
        if !exists {
            return Err(AppError::NotFound);
        }
        identity.erase_customer(customer_id).await
    }
}
