//! Sign in with Apple and Sign in with Google (issue 30): the nonce shopd gives the app, the sign-in with the
//! platform's ID token, the identities a customer links and unlinks, and Apple's server-to-server
//! notifications.
//!
//! An identity is (provider, subject) → customer, found by a blind index of `provider:sub`. A subject shopd has
//! not seen makes a new customer — never one found by e-mail, which a provider may give unverified or as a
//! relay address. Such a customer has no phone: ordering waits until one is verified (`POST /v1/me/phone`).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::claims::Audience;
use super::id_tokens::{self, IdClaims, IdTokenError, Jwks, NonceRule};
use super::sessions::{self, Issued, now};
use super::signup::customer_field;
use super::{Identity, recent_login};
use crate::config::SignInProvider;
use crate::crypto::IndexKind;
use crate::db::DbConnection;
use crate::db::schema::{customers, identities, sign_in_nonces};
use crate::domain::{Email, Sensitive};
use crate::error::{AppError, AppResult, Problem};
use crate::vault::{Field, Opened};

/// How long a sign-in nonce may wait for its ID token.
pub const NONCE_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A platform whose sign-in shopd takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Apple,
    Google,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apple => "apple",
            Self::Google => "google",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "apple" => Some(Self::Apple),
            "google" => Some(Self::Google),
            _ => None,
        }
    }
}

/// The configured platforms' verifiers.
#[derive(Debug, Clone, Default)]
pub struct Platforms {
    apple: Option<id_tokens::Provider>,
    google: Option<id_tokens::Provider>,
}

impl Platforms {
    pub fn new(apple: Option<&SignInProvider>, google: Option<&SignInProvider>) -> Self {
        let provider = |settings: &SignInProvider,
                        name: &'static str,
                        issuers: &'static [&'static str],
                        nonce: NonceRule| id_tokens::Provider {
            name,
            issuers,
            audiences: settings.client_ids.clone(),
            nonce,
            jwks: Jwks::new(settings.jwks_url.clone()),
        };
        Self {
            apple: apple
                .map(|s| provider(s, "apple", id_tokens::APPLE_ISSUERS, NonceRule::Sha256Hex)),
            google: google
                .map(|s| provider(s, "google", id_tokens::GOOGLE_ISSUERS, NonceRule::Plain)),
        }
    }

    fn get(&self, platform: Platform) -> AppResult<&id_tokens::Provider> {
        match platform {
            Platform::Apple => self.apple.as_ref(),
            Platform::Google => self.google.as_ref(),
        }
        .ok_or_else(|| {
            Problem::new(
                404,
                "provider_not_enabled",
                "Not found",
                format!(
                    "This shop does not offer sign-in with {}.",
                    platform.as_str()
                ),
            )
            .into()
        })
    }
}

/// What a platform sign-in came to.
#[derive(Debug)]
pub struct PlatformSignIn {
    pub issued: Issued,
    /// A customer was made by this sign-in.
    pub created: bool,
    /// Whether the customer has a verified phone (and so may order).
    pub phone_verified: bool,
}

/// One of a customer's linked platform identities.
#[derive(Debug)]
pub struct LinkedIdentity {
    pub provider: String,
    pub email: Option<Sensitive<String>>,
    pub created_at: NaiveDateTime,
}

fn refused(error: IdTokenError) -> AppError {
    match error {
        IdTokenError::Invalid(reason) => Problem::unauthorized(
            "invalid_id_token",
            format!("The ID token is not valid: {reason}."),
        )
        .into(),
        IdTokenError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "a sign-in provider's keys are unavailable");
            Problem {
                retry_after: Some(std::time::Duration::from_secs(30)),
                ..Problem::new(
                    503,
                    "provider_unavailable",
                    "Service unavailable",
                    "The sign-in provider cannot be reached; try again shortly.",
                )
            }
            .into()
        }
    }
}

fn invalid_nonce() -> AppError {
    Problem::invalid(
        "invalid_nonce",
        "nonce",
        "The nonce is not one shopd gave, was used already or has expired; ask for a new one.",
    )
    .into()
}

fn nonce_hash(nonce: &str) -> Vec<u8> {
    Sha256::digest(nonce.as_bytes()).to_vec()
}

fn identity_field(row_id: &str) -> Field<'_> {
    Field {
        table: "identities",
        column: "email",
        row_id,
    }
}

/// Spends a nonce shopd gave, inside the sign-in's transaction.
fn spend_nonce(conn: &mut DbConnection, nonce: &str) -> AppResult<()> {
    let now = now();
    let spent = diesel::update(
        sign_in_nonces::table
            .find(nonce_hash(nonce))
            .filter(sign_in_nonces::used_at.is_null())
            .filter(sign_in_nonces::expires_at.gt(now)),
    )
    .set(sign_in_nonces::used_at.eq(Some(now)))
    .execute(conn)?;
    if spent != 1 {
        return Err(invalid_nonce());
    }
    Ok(())
}

/// The customer an identity belongs to.
fn owner(conn: &mut DbConnection, platform: Platform, index: &[u8]) -> QueryResult<Option<String>> {
    identities::table
        .filter(identities::provider.eq(platform.as_str()))
        .filter(identities::subject_index.eq(index))
        .select(identities::customer_id)
        .first(conn)
        .optional()
}

/// The provider's e-mail when it says it verified it: kept as given, sealed.
fn verified_email(claims: &IdClaims) -> Option<Email> {
    claims
        .email
        .as_deref()
        .filter(|_| claims.email_verified == Some(true))
        .and_then(|e| Email::parse(e).ok())
}

#[derive(Deserialize)]
struct AppleNotification {
    /// A JSON object in a string, as Apple sends it (an object is taken too).
    events: serde_json::Value,
}

#[derive(Deserialize)]
struct AppleEvent {
    #[serde(rename = "type")]
    kind: String,
    sub: String,
}

impl Identity {
    /// `POST /v1/auth/nonce`: a nonce for one platform sign-in (5 minutes, single use, stored as its SHA-256).
    pub async fn sign_in_nonce(&self) -> AppResult<(Sensitive<String>, u64)> {
        use base64::Engine as _;
        let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(crate::config::secrets::random_bytes::<32>());
        let hash = nonce_hash(&nonce);
        self.db
            .write(move |conn| -> AppResult<()> {
                let now = now();
                diesel::insert_into(sign_in_nonces::table)
                    .values((
                        sign_in_nonces::hash.eq(&hash),
                        sign_in_nonces::expires_at.eq(now + chrono::Duration::seconds(300)),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await?;
        Ok((Sensitive::new(nonce), NONCE_TTL.as_secs()))
    }

    async fn verified_claims(
        &self,
        platform: Platform,
        id_token: &str,
        nonce: &str,
    ) -> AppResult<IdClaims> {
        let provider = self.platforms.get(platform)?;
        let claims = id_tokens::verify(provider, id_token, nonce, chrono::Utc::now().timestamp())
            .await
            .map_err(|e| {
                self.metrics.platform_sign_in(platform.as_str(), "refused");
                refused(e)
            })?;
        Ok(claims)
    }

    fn subject_index(&self, platform: Platform, sub: &str) -> Vec<u8> {
        self.vault.blind_index(
            IndexKind::ProviderSubject,
            &format!("{}:{sub}", platform.as_str()),
        )
    }

    /// `POST /v1/auth/apple`, `POST /v1/auth/google`: signs in the customer of this identity, or makes one.
    pub async fn sign_in_with(
        &self,
        platform: Platform,
        id_token: &str,
        nonce: &str,
        client: String,
    ) -> AppResult<PlatformSignIn> {
        let claims = self.verified_claims(platform, id_token, nonce).await?;
        let index = self.subject_index(platform, &claims.sub);
        let email = verified_email(&claims);
        let (this, nonce) = (self.clone(), nonce.to_owned());
        let signed_in = self
            .db
            .write(move |conn| -> AppResult<PlatformSignIn> {
                spend_nonce(conn, &nonce)?;
                let (customer_id, created) = match owner(conn, platform, &index)? {
                    Some(id) => (id, false),
                    None => (
                        this.new_platform_customer(conn, platform, &index, &email)?,
                        true,
                    ),
                };
                let phone_verified = customers::table
                    .find(&customer_id)
                    .select(customers::phone_index.is_not_null())
                    .first(conn)?;
                let issued = this.tokens.start(
                    conn,
                    Audience::Customer,
                    &customer_id,
                    None,
                    &client,
                    sessions::Factors::PLATFORM,
                )?;
                Ok(PlatformSignIn {
                    issued,
                    created,
                    phone_verified,
                })
            })
            .await?;
        self.metrics.platform_sign_in(
            platform.as_str(),
            if signed_in.created {
                "created"
            } else {
                "signed_in"
            },
        );
        Ok(signed_in)
    }

    /// A customer with this identity as their only way in; the provider's verified e-mail becomes theirs.
    fn new_platform_customer(
        &self,
        conn: &mut DbConnection,
        platform: Platform,
        index: &[u8],
        email: &Option<Email>,
    ) -> AppResult<String> {
        let id = uuid::Uuid::now_v7().to_string();
        self.vault.create_data_key(conn, &id)?;
        let (sealed, email_index) = match email {
            Some(e) => (
                Some(
                    self.vault
                        .seal(conn, &id, customer_field("email", &id), e.as_str())?,
                ),
                Some(self.vault.blind_index(IndexKind::Email, e.as_str())),
            ),
            None => (None, None),
        };
        let now = now();
        diesel::insert_into(customers::table)
            .values((
                customers::id.eq(&id),
                customers::email.eq(sealed),
                customers::email_index.eq(email_index),
                customers::created_at.eq(now),
                customers::updated_at.eq(now),
            ))
            .execute(conn)?;
        self.insert_identity(conn, &id, platform, index, email)?;
        Ok(id)
    }

    fn insert_identity(
        &self,
        conn: &mut DbConnection,
        customer_id: &str,
        platform: Platform,
        index: &[u8],
        email: &Option<Email>,
    ) -> AppResult<()> {
        let row_id = uuid::Uuid::now_v7().to_string();
        let sealed = match email {
            Some(e) => {
                Some(
                    self.vault
                        .seal(conn, customer_id, identity_field(&row_id), e.as_str())?,
                )
            }
            None => None,
        };
        diesel::insert_into(identities::table)
            .values((
                identities::id.eq(&row_id),
                identities::customer_id.eq(customer_id),
                identities::provider.eq(platform.as_str()),
                identities::subject_index.eq(index),
                identities::email.eq(sealed),
                identities::created_at.eq(now()),
            ))
            .execute(conn)?;
        Ok(())
    }

    /// `POST /v1/me/identities`: links a platform identity to the signed-in customer (a sign-in within the
    /// last 5 minutes: it adds a way in).
    pub async fn link_identity(
        &self,
        customer_id: &str,
        auth_time: i64,
        platform: Platform,
        id_token: &str,
        nonce: &str,
    ) -> AppResult<()> {
        recent_login(auth_time, "link a sign-in provider")?;
        let claims = self.verified_claims(platform, id_token, nonce).await?;
        let index = self.subject_index(platform, &claims.sub);
        let email = verified_email(&claims);
        let (this, nonce, customer) = (self.clone(), nonce.to_owned(), customer_id.to_owned());
        self.db
            .write(move |conn| -> AppResult<Result<(), AppError>> {
                spend_nonce(conn, &nonce)?;
                match owner(conn, platform, &index)? {
                    Some(owner) if owner == customer => return Ok(Ok(())),
                    Some(_) => {
                        return Ok(Err(Problem::conflict(
                            "identity_taken",
                            "This account at the provider signs in to another customer here.",
                        )
                        .into()));
                    }
                    None => {}
                }
                let already: i64 = identities::table
                    .filter(identities::customer_id.eq(&customer))
                    .filter(identities::provider.eq(platform.as_str()))
                    .count()
                    .get_result(conn)?;
                if already > 0 {
                    return Ok(Err(Problem::conflict(
                        "provider_already_linked",
                        "Another account at this provider is linked already; unlink it first.",
                    )
                    .into()));
                }
                this.insert_identity(conn, &customer, platform, &index, &email)?;
                Ok(Ok(()))
            })
            // The nonce is spent even when the link is refused.
            .await?
    }

    /// `GET /v1/me/identities`.
    pub async fn identities(&self, customer_id: &str) -> AppResult<Vec<LinkedIdentity>> {
        let (this, customer) = (self.clone(), customer_id.to_owned());
        self.db
            .run(move |conn| -> AppResult<Vec<LinkedIdentity>> {
                let rows: Vec<(String, String, Option<Vec<u8>>, NaiveDateTime)> = identities::table
                    .filter(identities::customer_id.eq(&customer))
                    .order(identities::created_at)
                    .select((
                        identities::id,
                        identities::provider,
                        identities::email,
                        identities::created_at,
                    ))
                    .load(conn)?;
                rows.into_iter()
                    .map(|(id, provider, email, created_at)| {
                        let email = match email {
                            None => None,
                            Some(sealed) => {
                                match this.vault.open(
                                    conn,
                                    &customer,
                                    identity_field(&id),
                                    &sealed,
                                )? {
                                    Opened::Value(v) => Some(v),
                                    Opened::Erased => None,
                                }
                            }
                        };
                        Ok(LinkedIdentity {
                            provider,
                            email,
                            created_at,
                        })
                    })
                    .collect()
            })
            .await
    }

    /// `DELETE /v1/me/identities/{provider}`: refused when it is the customer's last way in.
    pub async fn unlink_identity(&self, customer_id: &str, platform: Platform) -> AppResult<()> {
        let customer = customer_id.to_owned();
        self.db
            .write(move |conn| -> AppResult<()> {
                let linked: i64 = identities::table
                    .filter(identities::customer_id.eq(&customer))
                    .filter(identities::provider.eq(platform.as_str()))
                    .count()
                    .get_result(conn)?;
                if linked == 0 {
                    return Err(AppError::NotFound);
                }
                if super::ways_in(conn, &customer)? <= 1 {
                    return Err(super::last_way_in());
                }
                diesel::delete(
                    identities::table
                        .filter(identities::customer_id.eq(&customer))
                        .filter(identities::provider.eq(platform.as_str())),
                )
                .execute(conn)?;
                Ok(())
            })
            .await
    }

    /// `POST /v1/webhooks/apple`: Apple's server-to-server notification, a JWT it signed (checked before its
    /// events are read). `consent-revoked` unlinks the identity and ends the customer's sessions;
    /// `account-delete` erases the customer. Returns what it did.
    pub async fn apple_notification(&self, payload: &str) -> AppResult<&'static str> {
        let provider = self.platforms.get(Platform::Apple)?;
        let signed: AppleNotification =
            id_tokens::verify_signed(provider, payload, &[], chrono::Utc::now().timestamp())
                .await
                .map_err(refused)?;
        let event = match signed.events {
            serde_json::Value::String(text) => serde_json::from_str::<AppleEvent>(&text),
            object => serde_json::from_value(object),
        };
        let event = event.map_err(|_| {
            AppError::from(Problem::bad_request(
                "invalid_notification",
                "The notification's events cannot be read.",
            ))
        })?;
        let index = self.subject_index(Platform::Apple, &event.sub);
        let kind = event.kind;
        let outcome = match kind.as_str() {
            "consent-revoked" | "account-delete" => kind.clone(),
            _ => return Ok("no_effect"),
        };
        let found = self
            .db
            .write(move |conn| -> AppResult<Option<(String, Vec<String>)>> {
                let Some(customer) = owner(conn, Platform::Apple, &index)? else {
                    return Ok(None);
                };
                diesel::delete(
                    identities::table
                        .filter(identities::provider.eq(Platform::Apple.as_str()))
                        .filter(identities::subject_index.eq(&index)),
                )
                .execute(conn)?;
                let ended = sessions::end_sessions_of(conn, &customer, None, &outcome)?;
                Ok(Some((customer, ended)))
            })
            .await?;
        let Some((customer, ended)) = found else {
            return Ok("unknown_identity");
        };
        self.revocations.ended_here(&ended);
        if kind == "account-delete" {
            self.erase_customer(&customer).await?;
            return Ok("erased");
        }
        Ok("unlinked")
    }
}
