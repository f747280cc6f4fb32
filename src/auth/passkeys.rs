//! Passkeys (WebAuthn, issue 30) with `webauthn-rs`: registered while signed in, then a passwordless,
//! usernameless sign-in. User verification — Face ID, a fingerprint, the device PIN — is required by both
//! ceremonies. The relying party is `SHOP_DOMAIN`; the allowed origins are `https://SHOP_DOMAIN` and, for the
//! Android app, `android:apk-key-hash:` of each of its signing certificates.
//!
//! A ceremony's state waits in `passkey_ceremonies` between begin and finish, five minutes at most, and the
//! finish deletes it as it reads it, in its transaction, refused or not: webauthn-rs keeps no record of used
//! challenges, and a synced passkey's sign count stays 0, so without that an assertion could be replayed.
//! A sign count that does not grow (when either side is above 0) is refused by the library: a cloned
//! authenticator; it is recorded as a security event.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use super::claims::Audience;
use super::sessions::{Issued, now};
use super::{Identity, recent_login};
use crate::db::DbConnection;
use crate::db::schema::{passkey_ceremonies, passkeys, security_events};
use crate::error::{AppError, AppResult, Problem};
use crate::vault::{Field, Opened};

pub const CEREMONY_TTL: std::time::Duration = std::time::Duration::from_secs(300);
const REGISTER: &str = "register";
const SIGN_IN: &str = "sign_in";
pub const MAX_NAME_CHARS: usize = 60;

/// The relying party: `SHOP_DOMAIN` and the origins of the shop's web site and Android app.
pub fn relying_party(
    shop_domain: &str,
    apps: &crate::config::AppLinks,
) -> Result<Webauthn, WebauthnError> {
    let origin =
        Url::parse(&format!("https://{shop_domain}")).map_err(|_| WebauthnError::Configuration)?;
    let mut builder = WebauthnBuilder::new(shop_domain, &origin)?.rp_name(shop_domain);
    for print in apps.android.iter().flat_map(|a| &a.cert_fingerprints) {
        let android = Url::parse(&format!(
            "android:apk-key-hash:{}",
            URL_SAFE_NO_PAD.encode(print)
        ))
        .map_err(|_| WebauthnError::Configuration)?;
        builder = builder.append_allowed_origin(&android);
    }
    builder.build()
}

/// A ceremony begun: its id, and the options for the platform's passkey API (`publicKey` …).
#[derive(Debug)]
pub struct Ceremony {
    pub id: String,
    pub options: Value,
}

/// One of the customer's passkeys.
#[derive(Debug)]
pub struct PasskeyInfo {
    pub id: String,
    pub name: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
}

fn name_field(row_id: &str) -> Field<'_> {
    Field {
        table: "passkeys",
        column: "name",
        row_id,
    }
}

fn parse_name(name: Option<String>) -> AppResult<String> {
    let name = name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Passkey".to_owned());
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Problem::invalid(
            "invalid_name",
            "name",
            format!("A passkey's name has at most {MAX_NAME_CHARS} characters."),
        )
        .into());
    }
    Ok(name)
}

fn ceremony_not_found() -> AppError {
    Problem::invalid(
        "ceremony_not_found",
        "ceremony_id",
        "There is no such passkey ceremony, or it was finished or has expired: begin again.",
    )
    .into()
}

/// Why the library refused a credential, for the problem's detail (the refusal is the same either way).
fn refusal_reason(error: &WebauthnError) -> &'static str {
    match error {
        WebauthnError::InvalidRPOrigin => "it was made for another site or app",
        WebauthnError::InvalidRPIDHash => "it is for another relying party",
        WebauthnError::UserNotVerified => "the user was not verified (Face ID, fingerprint or PIN)",
        WebauthnError::UserNotPresent => "the user was not present",
        WebauthnError::MismatchedChallenge => "it answers another challenge",
        WebauthnError::CredentialPossibleCompromise => {
            "its sign count went back: the authenticator may be cloned"
        }
        WebauthnError::CredentialNotFound => "the passkey is not known here",
        _ => "it cannot be verified",
    }
}

fn refused(status: u16, error: &WebauthnError) -> AppError {
    Problem::new(
        status,
        "passkey_refused",
        if status == 401 {
            "Unauthorized"
        } else {
            "Invalid request"
        },
        format!("The passkey is refused: {}.", refusal_reason(error)),
    )
    .into()
}

/// Takes the ceremony `id` of `kind` (and of `customer`, for a registration): deleted as it is read.
fn take_ceremony(
    conn: &mut DbConnection,
    id: &str,
    kind: &str,
    customer: Option<&str>,
) -> AppResult<Option<String>> {
    let found: Option<(Option<String>, String, NaiveDateTime)> = passkey_ceremonies::table
        .find(id)
        .filter(passkey_ceremonies::kind.eq(kind))
        .select((
            passkey_ceremonies::customer_id,
            passkey_ceremonies::state,
            passkey_ceremonies::expires_at,
        ))
        .first(conn)
        .optional()?;
    let Some((owner, state, expires_at)) = found else {
        return Ok(None);
    };
    if owner.as_deref() != customer {
        return Ok(None);
    }
    // A concurrent finish of the same ceremony waits here for this one and then deletes nothing.
    let deleted = diesel::delete(passkey_ceremonies::table.find(id)).execute(conn)?;
    Ok((deleted == 1 && expires_at > now()).then_some(state))
}

fn insert_ceremony(
    conn: &mut DbConnection,
    kind: &str,
    customer: Option<&str>,
    state: String,
) -> QueryResult<String> {
    let id = uuid::Uuid::new_v4().to_string();
    diesel::insert_into(passkey_ceremonies::table)
        .values((
            passkey_ceremonies::id.eq(&id),
            passkey_ceremonies::kind.eq(kind),
            passkey_ceremonies::customer_id.eq(customer),
            passkey_ceremonies::state.eq(state),
            passkey_ceremonies::expires_at
                .eq(now() + chrono::Duration::from_std(CEREMONY_TTL).expect("short")),
        ))
        .execute(conn)?;
    Ok(id)
}

fn stored_passkeys(conn: &mut DbConnection, customer: &str) -> AppResult<Vec<Passkey>> {
    let rows: Vec<String> = passkeys::table
        .filter(passkeys::customer_id.eq(customer))
        .select(passkeys::passkey)
        .load(conn)?;
    rows.iter()
        .map(|json| {
            serde_json::from_str(json).map_err(|e| anyhow::anyhow!("a stored passkey: {e}").into())
        })
        .collect()
}

fn record_event(conn: &mut DbConnection, customer: &str, kind: &str) -> QueryResult<usize> {
    diesel::insert_into(security_events::table)
        .values((
            security_events::id.eq(uuid::Uuid::now_v7().to_string()),
            security_events::subject_id.eq(customer),
            security_events::kind.eq(kind),
            security_events::created_at.eq(now()),
        ))
        .execute(conn)
}

fn to_json<T: serde::Serialize>(value: &T) -> AppResult<String> {
    serde_json::to_string(value).map_err(|e| anyhow::anyhow!("a passkey state: {e}").into())
}

impl Identity {
    /// `POST /v1/me/passkeys/begin`: the options for a new passkey (a sign-in within the last 5 minutes: a
    /// passkey is a way in).
    pub async fn begin_passkey_registration(
        &self,
        customer_id: &str,
        auth_time: i64,
    ) -> AppResult<Ceremony> {
        recent_login(auth_time, "add a passkey")?;
        let user = Uuid::parse_str(customer_id).map_err(|_| AppError::NotFound)?;
        let profile = self.profile(customer_id).await?;
        let label = profile
            .phone_masked
            .clone()
            .or(profile.email_masked.clone())
            .unwrap_or_else(|| format!("{} account", self.shop_domain));
        let display = profile
            .name
            .map(|n| n.into_inner())
            .unwrap_or_else(|| label.clone());
        let (this, customer) = (self.clone(), customer_id.to_owned());
        self.db
            .write(move |conn| -> AppResult<Ceremony> {
                let exclude = stored_passkeys(conn, &customer)?
                    .iter()
                    .map(|p| p.cred_id().clone())
                    .collect();
                let (options, state): (_, PasskeyRegistration) = this
                    .webauthn
                    .start_passkey_registration(user, &label, &display, Some(exclude))
                    .map_err(|e| anyhow::anyhow!("passkey registration options: {e}"))?;
                let mut options = serde_json::to_value(&options)
                    .map_err(|e| anyhow::anyhow!("passkey options: {e}"))?;
                // A discoverable credential, so that the sign-in needs no user name (webauthn-rs asks for
                // `discouraged`; its finish does not depend on it).
                let selection = &mut options["publicKey"]["authenticatorSelection"];
                selection["residentKey"] = "required".into();
                selection["requireResidentKey"] = true.into();
                let id = insert_ceremony(conn, REGISTER, Some(&customer), to_json(&state)?)?;
                Ok(Ceremony { id, options })
            })
            .await
    }

    /// `POST /v1/me/passkeys/finish`: the platform's answer to the options; the passkey is stored.
    pub async fn finish_passkey_registration(
        &self,
        customer_id: &str,
        ceremony_id: &str,
        name: Option<String>,
        credential: Value,
    ) -> AppResult<PasskeyInfo> {
        let name = parse_name(name)?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(credential).map_err(|_| invalid_credential())?;
        let (this, customer, ceremony) =
            (self.clone(), customer_id.to_owned(), ceremony_id.to_owned());
        self.db
            .write(move |conn| -> AppResult<Result<PasskeyInfo, AppError>> {
                let Some(state) = take_ceremony(conn, &ceremony, REGISTER, Some(&customer))? else {
                    return Err(ceremony_not_found());
                };
                let state: PasskeyRegistration = serde_json::from_str(&state)
                    .map_err(|e| anyhow::anyhow!("a stored passkey state: {e}"))?;
                let passkey = match this
                    .webauthn
                    .finish_passkey_registration(&credential, &state)
                {
                    Ok(passkey) => passkey,
                    // The ceremony stays spent.
                    Err(e) => return Ok(Err(refused(422, &e))),
                };
                let id = uuid::Uuid::now_v7().to_string();
                let sealed = this.vault.seal(conn, &customer, name_field(&id), &name)?;
                let created_at = now();
                let inserted = diesel::insert_into(passkeys::table)
                    .values((
                        passkeys::id.eq(&id),
                        passkeys::customer_id.eq(&customer),
                        passkeys::credential_id.eq(passkey.cred_id().as_slice()),
                        passkeys::passkey.eq(to_json(&passkey)?),
                        passkeys::name.eq(sealed),
                        passkeys::created_at.eq(created_at),
                    ))
                    .execute(conn);
                match inserted {
                    Ok(_) => {}
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => {
                        return Ok(Err(Problem::conflict(
                            "passkey_exists",
                            "This passkey is registered already.",
                        )
                        .into()));
                    }
                    Err(e) => return Err(e.into()),
                }
                record_event(conn, &customer, "passkey_added")?;
                Ok(Ok(PasskeyInfo {
                    id,
                    name: name.clone(),
                    created_at,
                    last_used_at: None,
                }))
            })
            .await?
    }

    /// `GET /v1/me/passkeys`.
    pub async fn passkeys(&self, customer_id: &str) -> AppResult<Vec<PasskeyInfo>> {
        let (this, customer) = (self.clone(), customer_id.to_owned());
        self.db
            .run(move |conn| -> AppResult<Vec<PasskeyInfo>> {
                let rows: Vec<(String, Vec<u8>, NaiveDateTime, Option<NaiveDateTime>)> =
                    passkeys::table
                        .filter(passkeys::customer_id.eq(&customer))
                        .order(passkeys::created_at)
                        .select((
                            passkeys::id,
                            passkeys::name,
                            passkeys::created_at,
                            passkeys::last_used_at,
                        ))
                        .load(conn)?;
                rows.into_iter()
                    .map(|(id, sealed, created_at, last_used_at)| {
                        let name =
                            match this.vault.open(conn, &customer, name_field(&id), &sealed)? {
                                Opened::Value(v) => v.into_inner(),
                                Opened::Erased => String::new(),
                            };
                        Ok(PasskeyInfo {
                            id,
                            name,
                            created_at,
                            last_used_at,
                        })
                    })
                    .collect()
            })
            .await
    }

    /// `PATCH /v1/me/passkeys/{id}`.
    pub async fn rename_passkey(
        &self,
        customer_id: &str,
        passkey_id: &str,
        name: String,
    ) -> AppResult<()> {
        let name = parse_name(Some(name))?;
        let (this, customer, id) = (self.clone(), customer_id.to_owned(), passkey_id.to_owned());
        self.db
            .write(move |conn| -> AppResult<()> {
                let sealed = this.vault.seal(conn, &customer, name_field(&id), &name)?;
                let changed = diesel::update(
                    passkeys::table
                        .find(&id)
                        .filter(passkeys::customer_id.eq(&customer)),
                )
                .set(passkeys::name.eq(sealed))
                .execute(conn)?;
                if changed == 0 {
                    return Err(AppError::NotFound);
                }
                Ok(())
            })
            .await
    }

    /// `DELETE /v1/me/passkeys/{id}`: refused when it is the account's last way in.
    pub async fn delete_passkey(&self, customer_id: &str, passkey_id: &str) -> AppResult<()> {
        let (customer, id) = (customer_id.to_owned(), passkey_id.to_owned());
        self.db
            .write(move |conn| -> AppResult<()> {
                let mine: i64 = passkeys::table
                    .find(&id)
                    .filter(passkeys::customer_id.eq(&customer))
                    .count()
                    .get_result(conn)?;
                if mine == 0 {
                    return Err(AppError::NotFound);
                }
                if super::ways_in(conn, &customer)? <= 1 {
                    return Err(super::last_way_in());
                }
                diesel::delete(passkeys::table.find(&id)).execute(conn)?;
                record_event(conn, &customer, "passkey_removed")?;
                Ok(())
            })
            .await
    }

    /// `POST /v1/auth/passkey/begin`: the options for a usernameless sign-in.
    pub async fn begin_passkey_sign_in(&self) -> AppResult<Ceremony> {
        let this = self.clone();
        self.db
            .write(move |conn| -> AppResult<Ceremony> {
                let (mut options, state): (_, DiscoverableAuthentication) = this
                    .webauthn
                    .start_discoverable_authentication()
                    .map_err(|e| anyhow::anyhow!("passkey sign-in options: {e}"))?;
                // A sign-in button, not the autofill of a user-name field: the app says which it wants.
                options.mediation = None;
                let options = serde_json::to_value(&options)
                    .map_err(|e| anyhow::anyhow!("passkey options: {e}"))?;
                let id = insert_ceremony(conn, SIGN_IN, None, to_json(&state)?)?;
                Ok(Ceremony { id, options })
            })
            .await
    }

    /// `POST /v1/auth/passkey/finish`: signs in the customer whose passkey answered.
    pub async fn finish_passkey_sign_in(
        &self,
        ceremony_id: &str,
        credential: Value,
        client: String,
    ) -> AppResult<Issued> {
        let credential: PublicKeyCredential =
            serde_json::from_value(credential).map_err(|_| invalid_credential())?;
        let (this, ceremony) = (self.clone(), ceremony_id.to_owned());
        let outcome = self
            .db
            .write(move |conn| -> AppResult<Result<Issued, AppError>> {
                let Some(state) = take_ceremony(conn, &ceremony, SIGN_IN, None)? else {
                    return Err(ceremony_not_found());
                };
                let state: DiscoverableAuthentication = serde_json::from_str(&state)
                    .map_err(|e| anyhow::anyhow!("a stored passkey state: {e}"))?;
                let (user, credential_id) = match this
                    .webauthn
                    .identify_discoverable_authentication(&credential)
                {
                    Ok(found) => found,
                    Err(e) => return Ok(Err(refused(401, &e))),
                };
                let customer = user.to_string();
                let found: Option<(String, String)> = passkeys::table
                    .filter(passkeys::credential_id.eq(credential_id))
                    .filter(passkeys::customer_id.eq(&customer))
                    .select((passkeys::id, passkeys::passkey))
                    .first(conn)
                    .optional()?;
                let Some((row_id, stored)) = found else {
                    return Ok(Err(refused(401, &WebauthnError::CredentialNotFound)));
                };
                let mut passkey: Passkey = serde_json::from_str(&stored)
                    .map_err(|e| anyhow::anyhow!("a stored passkey: {e}"))?;
                let result = match this.webauthn.finish_discoverable_authentication(
                    &credential,
                    state,
                    &[DiscoverableKey::from(&passkey)],
                ) {
                    Ok(result) => result,
                    Err(e) => {
                        if matches!(e, WebauthnError::CredentialPossibleCompromise) {
                            record_event(conn, &customer, "passkey_possibly_cloned")?;
                        }
                        return Ok(Err(refused(401, &e)));
                    }
                };
                // The sign count and backup state move on; the row is written either way (`last_used_at`).
                let _ = passkey.update_credential(&result);
                diesel::update(passkeys::table.find(&row_id))
                    .set((
                        passkeys::passkey.eq(to_json(&passkey)?),
                        passkeys::last_used_at.eq(Some(now())),
                    ))
                    .execute(conn)?;
                let mut issued = this.tokens.start(
                    conn,
                    Audience::Customer,
                    &customer,
                    None,
                    &client,
                    super::sessions::Factors::PASSKEY,
                )?;
                // A passkey with user verification is two factors: this device needs no code later.
                issued.device_token = Some(super::devices::remember(conn, &customer)?);
                Ok(Ok(issued))
            })
            .await?;
        self.metrics.passkey_sign_in(if outcome.is_ok() {
            "signed_in"
        } else {
            "refused"
        });
        outcome
    }
}

fn invalid_credential() -> AppError {
    Problem::invalid(
        "invalid_credential",
        "credential",
        "The credential is not a WebAuthn public-key credential as the platform gives it.",
    )
    .into()
}
