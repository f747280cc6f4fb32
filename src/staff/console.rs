//! Sign-ins to the staff console. The browser's cookie holds a random token; its SHA-256 names a console
//! session at a stage: the password was right and a code is due (`Factor`), a factor is to be set up
//! (`Enrol`), or signed in, carried by a staff session row with the API's lifetimes (12 h, 1 h idle) and its
//! endings (logout, disable, a factor reset). A pending stage lasts 10 minutes.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::factor::{self, FactorRefusal, FactorState};
use super::{Role, Staff};
use crate::auth::claims::Audience;
use crate::auth::sessions::{self, Factors, LAST_USED_PRECISION, SessionRow, now, open_session};
use crate::auth::throttle;
use crate::db::DbConnection;
use crate::db::schema::{console_sessions, sessions as session_rows, staff};
use crate::domain::Sensitive;
use crate::error::{AppError, AppResult};

const PENDING_MINUTES: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Factor,
    Enrol,
    SignedIn,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Factor => "factor",
            Self::Enrol => "enrol",
            Self::SignedIn => "signed_in",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "factor" => Some(Self::Factor),
            "enrol" => Some(Self::Enrol),
            "signed_in" => Some(Self::SignedIn),
            _ => None,
        }
    }
}

/// A live console session, as the cookie's token names it.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub token_hash: Vec<u8>,
    pub staff_id: String,
    /// Read from the member's row on every request: a role change counts at once.
    pub role: Role,
    pub stage: Stage,
    pub session_id: Option<String>,
}

/// A new cookie token and the SHA-256 it is stored as.
pub fn new_token() -> (Sensitive<String>, Vec<u8>) {
    let token = URL_SAFE_NO_PAD.encode(crate::config::secrets::random_bytes::<32>());
    let hash = token_hash(&token);
    (Sensitive::new(token), hash)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

type ConsoleRow = (String, String, Option<String>, NaiveDateTime, String);

/// Moves a pending console session on to signed in: a staff session starts and carries it.
fn sign_in(
    conn: &mut DbConnection,
    hash: &[u8],
    staff_id: &str,
    role: &str,
    client: &str,
    factors: Factors,
) -> AppResult<()> {
    let session = open_session(conn, Audience::Staff, staff_id, Some(role), client, factors)?;
    diesel::update(console_sessions::table.find(hash))
        .set((
            console_sessions::stage.eq(Stage::SignedIn.as_str()),
            console_sessions::session_id.eq(Some(&session.id)),
            console_sessions::expires_at.eq(session.expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

impl Staff {
    /// The password step of a console sign-in: a new console session at its first stage, and the token for
    /// its cookie. A member with a factor gives a code next; one whose role needs a factor and has none
    /// enrols one; anyone else is signed in.
    pub async fn console_sign_in(
        &self,
        email: &str,
        password: Sensitive<String>,
        ip: IpAddr,
        client: String,
    ) -> AppResult<(Sensitive<String>, Stage)> {
        let clerks_need_factor = self.clerks_need_factor;
        self.password_step(email, password, ip, move |conn, key, account| {
            throttle::clear_login_failures(conn, key)?;
            let role = account.role.clone().unwrap_or_default();
            let needed = factor::needed(Role::parse(&role), clerks_need_factor);
            let stage = match factor::state(conn, &account.id)? {
                FactorState::Confirmed => Stage::Factor,
                _ if needed => Stage::Enrol,
                _ => Stage::SignedIn,
            };
            let (token, hash) = new_token();
            diesel::insert_into(console_sessions::table)
                .values((
                    console_sessions::token_hash.eq(&hash),
                    console_sessions::staff_id.eq(&account.id),
                    console_sessions::stage.eq(stage.as_str()),
                    console_sessions::created_at.eq(now()),
                    console_sessions::expires_at
                        .eq(now() + chrono::Duration::minutes(PENDING_MINUTES)),
                ))
                .execute(conn)?;
            if stage == Stage::SignedIn {
                // A clerk without a factor, where the shop lets clerks go without one.
                sign_in(conn, &hash, &account.id, &role, &client, Factors::PASSWORD)?;
            }
            Ok(Ok((token, stage)))
        })
        .await?
        .map_err(AppError::from)
    }

    /// The console session a cookie's token names, if it is live: not expired, its member enabled and, once
    /// signed in, its staff session live. Keeps the session's last use to the minute (its idle limit).
    pub async fn console_session(&self, token: &str) -> AppResult<Option<ConsoleSession>> {
        let hash = token_hash(token);
        let (found, touch) = self
            .db
            .run(move |conn| -> AppResult<_> {
                let row: Option<ConsoleRow> = console_sessions::table
                    .inner_join(staff::table)
                    .filter(console_sessions::token_hash.eq(&hash))
                    .filter(console_sessions::expires_at.gt(now()))
                    .filter(staff::disabled_at.is_null())
                    .select((
                        console_sessions::staff_id,
                        console_sessions::stage,
                        console_sessions::session_id,
                        console_sessions::expires_at,
                        staff::role,
                    ))
                    .first(conn)
                    .optional()?;
                let Some((staff_id, stage, session_id, _, role)) = row else {
                    return Ok((None, false));
                };
                let (Some(stage), Some(role)) = (Stage::parse(&stage), Role::parse(&role)) else {
                    return Ok((None, false));
                };
                let mut touch = false;
                if let Some(sid) = &session_id {
                    let session: Option<SessionRow> = session_rows::table
                        .find(sid)
                        .select(SessionRow::as_select())
                        .first(conn)
                        .optional()?;
                    let live = session
                        .as_ref()
                        .is_some_and(|s| s.is_live(now(), sessions::policy(Audience::Staff)));
                    if !live {
                        return Ok((None, false));
                    }
                    touch = session.is_some_and(|s| {
                        s.last_used_at
                            + chrono::Duration::from_std(LAST_USED_PRECISION).expect("short")
                            < now()
                    });
                }
                Ok((
                    Some(ConsoleSession {
                        token_hash: hash,
                        staff_id,
                        role,
                        stage,
                        session_id,
                    }),
                    touch,
                ))
            })
            .await?;
        if let (true, Some(session)) = (touch, &found) {
            let sid = session.session_id.clone().unwrap_or_default();
            self.db
                .write(move |conn| -> AppResult<usize> {
                    Ok(diesel::update(session_rows::table.find(&sid))
                        .set(session_rows::last_used_at.eq(now()))
                        .execute(conn)?)
                })
                .await?;
        }
        Ok(found)
    }

    /// The code step: a right code (or recovery code) signs the console session in.
    pub async fn console_code(
        &self,
        session: &ConsoleSession,
        code: Sensitive<String>,
        client: String,
    ) -> AppResult<Result<(), FactorRefusal>> {
        let vault = self.vault.clone();
        let (hash, id, role) = (
            session.token_hash.clone(),
            session.staff_id.clone(),
            session.role,
        );
        self.db
            .write(move |conn| -> AppResult<Result<(), FactorRefusal>> {
                if let Err(refusal) = factor::check_code(conn, &vault, &id, code.expose())? {
                    return Ok(Err(refusal));
                }
                sign_in(
                    conn,
                    &hash,
                    &id,
                    role.as_str(),
                    &client,
                    Factors::PASSWORD_AND_TOTP,
                )?;
                Ok(Ok(()))
            })
            .await
    }

    /// The enrolment step: the first right code confirms the factor and signs the console session in; the
    /// recovery codes come back to be shown once.
    pub async fn console_enrol(
        &self,
        session: &ConsoleSession,
        code: Sensitive<String>,
        client: String,
    ) -> AppResult<Result<Vec<Sensitive<String>>, FactorRefusal>> {
        let codes = match self
            .confirm_factor(&session.staff_id, code.expose())
            .await?
        {
            Ok(codes) => codes,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let (hash, id, role) = (
            session.token_hash.clone(),
            session.staff_id.clone(),
            session.role,
        );
        self.db
            .write(move |conn| {
                sign_in(
                    conn,
                    &hash,
                    &id,
                    role.as_str(),
                    &client,
                    Factors::PASSWORD_AND_TOTP,
                )
            })
            .await?;
        Ok(Ok(codes))
    }

    /// Signs a console session out: its staff session ends, on every instance at the next request.
    pub async fn console_sign_out(&self, session: &ConsoleSession) -> AppResult<()> {
        let (hash, sid) = (session.token_hash.clone(), session.session_id.clone());
        self.db
            .write(move |conn| -> AppResult<()> {
                diesel::delete(console_sessions::table.find(&hash)).execute(conn)?;
                if let Some(sid) = &sid {
                    sessions::end_session(conn, sid, "logout")?;
                }
                Ok(())
            })
            .await?;
        if let Some(sid) = &session.session_id {
            self.revocations.ended_here([sid]);
        }
        Ok(())
    }
}
