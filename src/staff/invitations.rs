//! An admin adds a member from the console: the member is made without a password, and an e-mail through the
//! outbox carries a one-time link to set one, good for 3 days. The link's secret is a MAC of the invitation's
//! id under the blind-index key (`IndexKind::StaffInvitation`): made when the e-mail is sent and again when the
//! link is followed, so neither the outbox nor the invitations table holds anything that opens it. (Changing
//! `BLIND_INDEX_KEY` voids the links not yet followed; an admin invites again.)

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::prelude::*;
use subtle::ConstantTimeEq;

use super::{Role, Staff, audit, email_field, insert_member, member_password};
use crate::auth::sessions::now;
use crate::crypto::IndexKind;
use crate::db::DbConnection;
use crate::db::schema::{staff, staff_invitations};
use crate::domain::{Email, Sensitive};
use crate::error::{AppError, AppResult, Problem};
use crate::notify::outbox::{self, Notification};
use crate::vault::{Opened, Vault};

const VALID_DAYS: i64 = 3;
/// What an invited member's password hash is until they set one: no password matches it.
pub const NO_PASSWORD: &str = "";

fn secret(vault: &Vault, invitation_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(vault.blind_index(IndexKind::StaffInvitation, invitation_id))
}

/// The link of an invitation, as its e-mail carries it: `{console}/staff/invitation/{id}.{secret}`.
pub fn link(vault: &Vault, console_origin: &str, invitation_id: &str) -> String {
    format!(
        "{console_origin}/staff/invitation/{invitation_id}.{}",
        secret(vault, invitation_id)
    )
}

/// The invitation a link names, if its secret is right (compared in constant time).
fn invitation_of(vault: &Vault, token: &str) -> Option<String> {
    let (id, given) = token.split_once('.')?;
    let expected = secret(vault, id);
    bool::from(expected.as_bytes().ct_eq(given.as_bytes())).then(|| id.to_owned())
}

fn not_valid() -> AppError {
    Problem::new(
        404,
        "invitation_not_valid",
        "Not valid",
        "This link is not valid: it was used already, it is older than 3 days, or it is not whole. \
         Ask an admin for a new invitation.",
    )
    .into()
}

/// The member an unused, unexpired invitation is for (their account still enabled).
fn open_invitation(conn: &mut DbConnection, invitation_id: &str) -> AppResult<String> {
    staff_invitations::table
        .inner_join(staff::table.on(staff::id.eq(staff_invitations::staff_id)))
        .filter(staff_invitations::id.eq(invitation_id))
        .filter(staff_invitations::used_at.is_null())
        .filter(staff_invitations::expires_at.gt(now()))
        .filter(staff::disabled_at.is_null())
        .select(staff_invitations::staff_id)
        .first(conn)
        .optional()?
        .ok_or_else(not_valid)
}

impl Staff {
    /// An admin invites a new member (audited): the account, without a password, and the e-mail with its link,
    /// in one transaction.
    pub async fn invite(
        &self,
        actor: &str,
        email: &str,
        role: Role,
        request_id: Option<String>,
    ) -> AppResult<String> {
        let email = Email::parse(email).map_err(|e| {
            AppError::from(Problem::invalid("invalid_email", "email", e.to_string()))
        })?;
        let vault = self.vault.clone();
        let actor = actor.to_owned();
        self.db
            .write(move |conn| -> AppResult<String> {
                let id =
                    insert_member(conn, &vault, &email, role, NO_PASSWORD)?.ok_or_else(|| {
                        AppError::from(Problem::conflict(
                            "staff_exists",
                            "A staff member with this e-mail exists already.",
                        ))
                    })?;
                let invitation_id = uuid::Uuid::now_v7().to_string();
                diesel::insert_into(staff_invitations::table)
                    .values((
                        staff_invitations::id.eq(&invitation_id),
                        staff_invitations::staff_id.eq(&id),
                        staff_invitations::expires_at
                            .eq(now() + chrono::Duration::days(VALID_DAYS)),
                    ))
                    .execute(conn)?;
                outbox::enqueue(
                    conn,
                    Notification::StaffInvitation {
                        staff_id: id.clone(),
                        invitation_id,
                    },
                )?;
                audit(
                    conn,
                    &actor,
                    "staff_invited",
                    ("staff", &id),
                    request_id.as_deref(),
                )?;
                Ok(id)
            })
            .await
    }

    /// Whether an invitation link is good (the page to set a password is shown only then).
    pub async fn check_invitation(&self, token: &str) -> AppResult<()> {
        let id = invitation_of(&self.vault, token).ok_or_else(not_valid)?;
        self.db
            .run(move |conn| open_invitation(conn, &id).map(|_| ()))
            .await
    }

    /// Sets an invited member's password (the same policy as `shopd staff add`) and spends the link.
    pub async fn accept_invitation(
        &self,
        token: &str,
        password: Sensitive<String>,
    ) -> AppResult<()> {
        let id = invitation_of(&self.vault, token).ok_or_else(not_valid)?;
        let vault = self.vault.clone();
        let lookup = id.clone();
        let email = self
            .db
            .run(move |conn| -> AppResult<String> {
                let staff_id = open_invitation(conn, &lookup)?;
                let sealed: Vec<u8> = staff::table
                    .find(&staff_id)
                    .select(staff::email)
                    .first(conn)?;
                match vault.open(conn, &staff_id, email_field(&staff_id), &sealed)? {
                    Opened::Value(v) => Ok(v.into_inner()),
                    Opened::Erased => Err(not_valid()),
                }
            })
            .await?;
        let email = Email::parse(&email).map_err(|_| not_valid())?;
        let password = member_password(&email, &password)
            .map_err(|e| AppError::from(Problem::invalid("weak_password", "password", e)))?;
        let hash = self
            .hasher
            .hash(Sensitive::new(password.expose().to_owned()))
            .await?;
        self.db
            .write(move |conn| -> AppResult<()> {
                let staff_id = open_invitation(conn, &id)?;
                let spent = diesel::update(
                    staff_invitations::table
                        .find(&id)
                        .filter(staff_invitations::used_at.is_null()),
                )
                .set(staff_invitations::used_at.eq(Some(now())))
                .execute(conn)?;
                if spent != 1 {
                    return Err(not_valid());
                }
                diesel::update(staff::table.find(&staff_id))
                    .set(staff::password_hash.eq(&hash))
                    .execute(conn)?;
                Ok(())
            })
            .await
    }
}
