//! Sessions, access tokens and rotating refresh tokens (DESIGN section 4).
//!
//! A session is a row; an access token (5 minutes) names it in `sid`. A refresh token is `rt_` + 256 random
//! bits, stored only as its SHA-256; each use spends it and issues a child in the same session. The token
//! spent just before, presented again within 10 s while its child is still unspent, gets a sibling (two
//! requests of one phone racing); using one sibling spends the others. Any other spent token ends the whole
//! session and records a security event.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::claims::{Audience, Claims, Expectations};
use crate::crypto::jwt::{SigningKeys, TokenError};
use crate::db::DbConnection;
use crate::db::schema::{refresh_tokens, security_events, sessions};
use crate::domain::Sensitive;
use crate::error::{AppError, AppResult, Problem};
use crate::notify::outbox::{self, Notification};

/// How a session was signed in to, as the access token's `amr` says it (RFC 8176 values; `fed` for a
/// platform's sign-in, and `mfa` whenever two factors were used).
#[derive(Debug, Clone, Copy)]
pub struct Factors(&'static [&'static str]);

impl Factors {
    pub const PASSWORD: Self = Self(&["pwd"]);
    /// A password and a code texted to the phone (signup, a new device's sign-in).
    pub const PASSWORD_AND_SMS: Self = Self(&["pwd", "sms", "mfa"]);
    /// A password and an authenticator app's code (staff).
    pub const PASSWORD_AND_TOTP: Self = Self(&["pwd", "otp", "mfa"]);
    /// A passkey with user verification: the device's key and the biometric or PIN that unlocked it.
    pub const PASSKEY: Self = Self(&["hwk", "user", "mfa"]);
    /// Sign in with Apple or Google.
    pub const PLATFORM: Self = Self(&["fed"]);

    fn stored(self) -> String {
        self.0.join(" ")
    }
}

pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(300);
pub const REUSE_GRACE: Duration = Duration::from_secs(10);
/// A session's `last_used_at` is moved by a refresh only when it is at least this old: one write fewer for
/// most refreshes of a busy client, and idleness (1 hour for staff, 7 days for customers) is still measured to
/// the minute.
pub const LAST_USED_PRECISION: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub absolute: Duration,
    pub idle: Duration,
}

pub const CUSTOMER_SESSIONS: SessionPolicy = SessionPolicy {
    absolute: Duration::from_secs(30 * 86_400),
    idle: Duration::from_secs(7 * 86_400),
};
pub const STAFF_SESSIONS: SessionPolicy = SessionPolicy {
    absolute: Duration::from_secs(12 * 3600),
    idle: Duration::from_secs(3600),
};

pub fn policy(audience: Audience) -> SessionPolicy {
    match audience {
        Audience::Customer => CUSTOMER_SESSIONS,
        Audience::Staff => STAFF_SESSIONS,
    }
}

fn audience_name(audience: Audience) -> &'static str {
    match audience {
        Audience::Customer => "customer",
        Audience::Staff => "staff",
    }
}

/// A freshly issued token pair.
#[derive(Debug)]
pub struct Issued {
    pub session_id: String,
    pub subject_id: String,
    pub access_token: Sensitive<String>,
    pub expires_in: u64,
    pub refresh_token: Sensitive<String>,
    pub refresh_expires_in: u64,
    /// Set by a sign-in with a second factor (or a texted code, or a passkey): the app keeps it and sends it
    /// with its next password sign-in (`auth::devices`).
    pub device_token: Option<Sensitive<String>>,
}

/// What a refresh came to. `Reused` must be committed (the session ends) and then refused.
#[derive(Debug)]
pub enum Refreshed {
    Pair(Issued),
    Reused { session_id: String },
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: String,
    pub audience: String,
    pub subject_id: String,
    pub role: Option<String>,
    pub client: String,
    pub auth_time: NaiveDateTime,
    /// The `Factors`, space-separated.
    pub amr: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub ended_at: Option<NaiveDateTime>,
}

crate::column_tuple! {
    /// The columns of a `SessionRow`, in its order.
    SESSION_COLUMNS = sessions::id,
    sessions::audience,
    sessions::subject_id,
    sessions::role,
    sessions::client,
    sessions::auth_time,
    sessions::amr,
    sessions::created_at,
    sessions::last_used_at,
    sessions::expires_at,
    sessions::ended_at,
}

impl SessionRow {
    pub fn is_live(&self, now: NaiveDateTime, policy: SessionPolicy) -> bool {
        self.ended_at.is_none() && self.expires_at > now && self.last_used_at + policy.idle > now
    }
}

/// Issues tokens; shared by the customer and staff flows.
#[derive(Clone)]
pub struct TokenIssuer {
    pub keys: std::sync::Arc<SigningKeys>,
    pub issuer: String,
    pub verified: std::sync::Arc<super::verified::VerifiedTokens>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// A new live session's row, as of now.
fn new_session(
    audience: Audience,
    subject_id: &str,
    role: Option<&str>,
    client: &str,
    factors: Factors,
) -> SessionRow {
    let now = now();
    SessionRow {
        id: uuid::Uuid::now_v7().to_string(),
        audience: audience_name(audience).to_owned(),
        subject_id: subject_id.to_owned(),
        role: role.map(str::to_owned),
        client: client.to_owned(),
        auth_time: now,
        amr: factors.stored(),
        created_at: now,
        last_used_at: now,
        expires_at: now + secs(policy(audience).absolute),
        ended_at: None,
    }
}

/// Opens a session with no tokens yet: the staff console's sign-in (its cookie names the session), or the
/// first step of `TokenIssuer::start`.
pub fn open_session(
    conn: &mut DbConnection,
    audience: Audience,
    subject_id: &str,
    role: Option<&str>,
    client: &str,
    factors: Factors,
) -> QueryResult<SessionRow> {
    let row = new_session(audience, subject_id, role, client, factors);
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(&row.id),
            sessions::audience.eq(&row.audience),
            sessions::subject_id.eq(&row.subject_id),
            sessions::role.eq(&row.role),
            sessions::client.eq(&row.client),
            sessions::auth_time.eq(row.auth_time),
            sessions::amr.eq(&row.amr),
            sessions::created_at.eq(row.created_at),
            sessions::last_used_at.eq(row.last_used_at),
            sessions::expires_at.eq(row.expires_at),
        ))
        .execute(conn)?;
    Ok(row)
}

pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

fn secs(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).expect("a short duration")
}

pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub fn new_refresh_token() -> String {
    format!(
        "rt_{}",
        URL_SAFE_NO_PAD.encode(crate::config::secrets::random_bytes::<32>())
    )
}

fn well_formed_refresh_token(token: &str) -> bool {
    token.len() == 46
        && token.starts_with("rt_")
        && token[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn invalid_refresh_token() -> AppError {
    Problem::unauthorized("invalid_refresh_token", "The refresh token is not valid.").into()
}

impl TokenIssuer {
    /// The claims of an access token for `audience`, valid now (its signature checked on first sight only).
    pub fn verify(&self, token: &str, audience: Audience) -> Result<Claims, TokenError> {
        self.verified.verify(
            &self.keys,
            token,
            &Expectations {
                issuer: &self.issuer,
                audience,
                now: Utc::now().timestamp(),
            },
        )
    }

    /// Starts a session after a successful login or signup and issues its first pair.
    pub fn start(
        &self,
        conn: &mut DbConnection,
        audience: Audience,
        subject_id: &str,
        role: Option<&str>,
        client: &str,
        factors: Factors,
    ) -> AppResult<Issued> {
        let row = open_session(conn, audience, subject_id, role, client, factors)?;
        self.issue(conn, &row, audience, None, row.created_at)
    }

    fn issue(
        &self,
        conn: &mut DbConnection,
        session: &SessionRow,
        audience: Audience,
        parent: Option<&[u8]>,
        now: NaiveDateTime,
    ) -> AppResult<Issued> {
        let refresh = new_refresh_token();
        diesel::insert_into(refresh_tokens::table)
            .values((
                refresh_tokens::hash.eq(hash_refresh_token(&refresh)),
                refresh_tokens::session_id.eq(&session.id),
                refresh_tokens::parent_hash.eq(parent),
                refresh_tokens::issued_at.eq(now),
            ))
            .execute(conn)?;
        Ok(self.pair(session, audience, refresh, now))
    }

    /// The pair of `refresh` (stored already) and a new access token of `session`.
    fn pair(
        &self,
        session: &SessionRow,
        audience: Audience,
        refresh: String,
        now: NaiveDateTime,
    ) -> Issued {
        let iat = now.and_utc().timestamp();
        let exp =
            (iat + ACCESS_TOKEN_TTL.as_secs() as i64).min(session.expires_at.and_utc().timestamp());
        let access = self.keys.sign(&Claims {
            iss: self.issuer.clone(),
            aud: audience,
            sub: session.subject_id.clone(),
            sid: session.id.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat,
            nbf: iat,
            exp,
            auth_time: session.auth_time.and_utc().timestamp(),
            amr: session.amr.split_whitespace().map(str::to_owned).collect(),
            role: session.role.clone(),
        });
        let policy = policy(audience);
        let refresh_until = session.expires_at.min(now + secs(policy.idle));
        Issued {
            session_id: session.id.clone(),
            subject_id: session.subject_id.clone(),
            access_token: Sensitive::new(access),
            expires_in: (exp - iat).max(0) as u64,
            refresh_token: Sensitive::new(refresh),
            refresh_expires_in: (refresh_until - now).num_seconds().max(0) as u64,
            device_token: None,
        }
    }

    /// Spends a refresh token. Run inside a write transaction.
    pub fn refresh(
        &self,
        conn: &mut DbConnection,
        audience: Audience,
        token: &str,
    ) -> AppResult<Refreshed> {
        if !well_formed_refresh_token(token) {
            return Err(invalid_refresh_token());
        }
        let hash = hash_refresh_token(token);
        // The token and its session in one query (one round trip).
        let found: Option<(Option<Vec<u8>>, Option<NaiveDateTime>, SessionRow)> =
            refresh_tokens::table
                .inner_join(sessions::table)
                .filter(refresh_tokens::hash.eq(&hash))
                .select((
                    refresh_tokens::parent_hash,
                    refresh_tokens::spent_at,
                    SESSION_COLUMNS,
                ))
                .first(conn)
                .optional()?;
        let Some((parent, spent_at, session)) = found else {
            return Err(invalid_refresh_token());
        };
        let now = now();
        if session.audience != audience_name(audience) {
            return Err(invalid_refresh_token());
        }
        if !session.is_live(now, policy(audience)) {
            return Err(Problem::unauthorized(
                "session_ended",
                "The session has ended; log in again.",
            )
            .into());
        }

        let spent_now = spent_at.is_none() && spend(conn, &hash, parent.as_deref(), now)?;
        if !spent_now {
            let spent_at: Option<NaiveDateTime> = refresh_tokens::table
                .find(&hash)
                .select(refresh_tokens::spent_at)
                .first(conn)?;
            let recent = spent_at.is_some_and(|at| at + secs(REUSE_GRACE) > now);
            let live_child: i64 = refresh_tokens::table
                .filter(refresh_tokens::parent_hash.eq(&hash))
                .filter(refresh_tokens::spent_at.is_null())
                .count()
                .get_result(conn)?;
            if !(recent && live_child > 0) {
                end_session(conn, &session.id, "refresh_token_reuse")?;
                diesel::insert_into(security_events::table)
                    .values((
                        security_events::id.eq(uuid::Uuid::now_v7().to_string()),
                        security_events::subject_id.eq(&session.subject_id),
                        security_events::session_id.eq(Some(&session.id)),
                        security_events::kind.eq("refresh_token_reuse"),
                        security_events::created_at.eq(now),
                    ))
                    .execute(conn)?;
                // In the same transaction: the alert exists exactly when the session ended. Whether the
                // customer has an e-mail, or the shop a staff alert address, is the sender's business, so
                // every reuse looks alike here.
                outbox::enqueue(
                    conn,
                    match audience {
                        Audience::Customer => Notification::SessionEndedByTokenReuse {
                            customer_id: session.subject_id.clone(),
                        },
                        Audience::Staff => Notification::StaffSessionEndedByTokenReuse {
                            staff_id: session.subject_id.clone(),
                        },
                    },
                )?;
                return Ok(Refreshed::Reused {
                    session_id: session.id,
                });
            }
        }
        if now - session.last_used_at >= secs(LAST_USED_PRECISION) {
            diesel::update(sessions::table.find(&session.id))
                .set(sessions::last_used_at.eq(now))
                .execute(conn)?;
        }
        self.issue(conn, &session, audience, Some(&hash), now)
            .map(Refreshed::Pair)
    }
}

/// Spends the refresh token `hash` if it is unspent, and then its unspent siblings (the children of the same
/// `parent` that lost a race to it): one line of descent goes on. Returns whether `hash` itself was unspent
/// until now (a concurrent refresh of the same token waits for this one's row lock and then finds it spent).
fn spend(
    conn: &mut DbConnection,
    hash: &[u8],
    parent: Option<&[u8]>,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let unspent = refresh_tokens::spent_at.is_null();
    let spent = diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::hash.eq(hash))
            .filter(unspent),
    )
    .set(refresh_tokens::spent_at.eq(now))
    .execute(conn)?;
    if spent == 0 {
        return Ok(false);
    }
    if let Some(parent) = parent {
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::parent_hash.eq(parent))
                .filter(unspent),
        )
        .set(refresh_tokens::spent_at.eq(now))
        .execute(conn)?;
    }
    Ok(true)
}

/// Ends one session if it is still live; returns whether it did.
pub fn end_session(conn: &mut DbConnection, session_id: &str, reason: &str) -> QueryResult<bool> {
    diesel::update(
        sessions::table
            .find(session_id)
            .filter(sessions::ended_at.is_null()),
    )
    .set((
        sessions::ended_at.eq(now()),
        sessions::end_reason.eq(reason),
    ))
    .execute(conn)
    .map(|n| n > 0)
}

/// Ends every live session of a subject, except `keep`; returns the ids ended.
pub fn end_sessions_of(
    conn: &mut DbConnection,
    subject_id: &str,
    keep: Option<&str>,
    reason: &str,
) -> QueryResult<Vec<String>> {
    let mut query = sessions::table
        .filter(sessions::subject_id.eq(subject_id))
        .filter(sessions::ended_at.is_null())
        .select(sessions::id)
        .into_boxed();
    if let Some(keep) = keep {
        query = query.filter(sessions::id.ne(keep));
    }
    let ids: Vec<String> = query.load(conn)?;
    if !ids.is_empty() {
        diesel::update(sessions::table.filter(sessions::id.eq_any(&ids)))
            .set((
                sessions::ended_at.eq(now()),
                sessions::end_reason.eq(reason),
            ))
            .execute(conn)?;
    }
    Ok(ids)
}

/// The live sessions of a subject, newest first.
pub fn live_sessions(
    conn: &mut DbConnection,
    subject_id: &str,
    audience: Audience,
) -> QueryResult<Vec<SessionRow>> {
    let now = now();
    let rows: Vec<SessionRow> = sessions::table
        .filter(sessions::subject_id.eq(subject_id))
        .filter(sessions::ended_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .order(sessions::created_at.desc())
        .select(SessionRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter(|s| s.is_live(now, policy(audience)))
        .collect())
}

/// Whether a session is still live, read from the database (the slow path of the revocation check).
pub fn session_is_live(
    conn: &mut DbConnection,
    session_id: &str,
    audience: Audience,
) -> QueryResult<bool> {
    let row: Option<SessionRow> = sessions::table
        .find(session_id)
        .select(SessionRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.is_some_and(|s| s.is_live(now(), policy(audience))))
}

/// A short description of the client from its User-Agent, for the session list.
pub fn describe_client(user_agent: Option<&str>) -> String {
    let ua = user_agent.unwrap_or("").trim();
    if ua.is_empty() {
        return "unknown client".to_owned();
    }
    let first: String = ua.chars().filter(|c| !c.is_control()).take(80).collect();
    first
}
