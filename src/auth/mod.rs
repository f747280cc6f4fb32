//! Customer identity: phone-verified signup, login, sessions and tokens, password reset, the profile, and
//! the customer's export and erasure. Staff share the session and token machinery.

mod account;
pub mod claims;
pub mod devices;
pub mod id_tokens;
pub mod login;
pub mod otp;
pub mod passkeys;
pub mod passwords;
mod phone;
pub mod platforms;
pub mod purge;
pub mod revocations;
pub mod sessions;
mod signup;
pub mod throttle;
pub mod verified;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::MacKey;
use crate::db::Db;
use crate::domain::{Phone, Sensitive};
use crate::error::{AppResult, Problem};
use crate::limits::AddressLimiter;
use crate::notify::sms::{SmsMessage, SmsSender};
use crate::telemetry::Metrics;
use crate::vault::Vault;

pub use account::{
    ExportedCustomer, LoginOutcome, LogoutScope, Profile, ProfileChange, SessionInfo,
};
pub use signup::VerificationStarted;

use passwords::Hasher;
use revocations::Revocations;
use sessions::TokenIssuer;

pub const CODE_TTL: Duration = Duration::from_secs(300);
pub const RESEND_AFTER: Duration = Duration::from_secs(60);
pub const TEXTS_PER_PHONE_PER_HOUR: i64 = 5;
/// `GET /v1/me/export` needs a login at most this long ago.
pub const RECENT_LOGIN: Duration = Duration::from_secs(300);

pub const SIGNUP: &str = "signup";
pub const PASSWORD_RESET: &str = "password_reset";
/// Verifying a phone for an account that has none (a platform sign-in's) or a new one.
pub const PHONE: &str = "phone";
/// The second factor of a password sign-in on a new device.
pub const LOGIN: &str = "login";

/// The ways into a customer's account: a password with a verified phone, each linked platform identity,
/// each passkey.
pub(crate) fn ways_in(conn: &mut crate::db::DbConnection, customer: &str) -> AppResult<i64> {
    use crate::db::schema::{customers, identities, passkeys};
    use diesel::prelude::*;
    let (password, phone): (Option<String>, Option<Vec<u8>>) = customers::table
        .find(customer)
        .select((customers::password_hash, customers::phone_index))
        .first(conn)?;
    let identities: i64 = identities::table
        .filter(identities::customer_id.eq(customer))
        .count()
        .get_result(conn)?;
    let passkeys: i64 = passkeys::table
        .filter(passkeys::customer_id.eq(customer))
        .count()
        .get_result(conn)?;
    Ok(i64::from(password.is_some() && phone.is_some()) + identities + passkeys)
}

pub(crate) fn last_way_in() -> crate::error::AppError {
    Problem::conflict(
        "last_way_in",
        "This is the only way to sign in to the account; add another first.",
    )
    .into()
}

/// Refuses unless the session's sign-in (`auth_time`, Unix seconds) was within `RECENT_LOGIN`: `what` needs a
/// fresh one.
pub fn recent_login(auth_time: i64, what: &str) -> AppResult<()> {
    let age = chrono::Utc::now().timestamp() - auth_time;
    if age < 0 || age > RECENT_LOGIN.as_secs() as i64 {
        return Err(Problem::unauthorized(
            "reauthentication_required",
            format!("Sign in again (within the last 5 minutes) to {what}."),
        )
        .into());
    }
    Ok(())
}

/// The customer-identity service: what the handlers call.
#[derive(Clone)]
pub struct Identity {
    pub(crate) db: Db,
    pub(crate) vault: Vault,
    pub(crate) pepper: Arc<MacKey>,
    pub(crate) hasher: Hasher,
    pub(crate) sms: Arc<dyn SmsSender>,
    pub tokens: TokenIssuer,
    pub revocations: Revocations,
    pub(crate) shop_domain: String,
    pub(crate) allowed_regions: Option<Vec<String>>,
    pub(crate) texts_per_ip: AddressLimiter,
    pub(crate) logins_per_ip: AddressLimiter,
    pub(crate) metrics: Metrics,
    pub(crate) platforms: platforms::Platforms,
    pub(crate) webauthn: Arc<webauthn_rs::Webauthn>,
    pub(crate) second_factor: crate::config::SecondFactorPolicy,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("shop_domain", &self.shop_domain)
            .finish_non_exhaustive()
    }
}

pub struct IdentityParts {
    pub db: Db,
    pub vault: Vault,
    pub config: Arc<crate::config::Config>,
    pub sms: Arc<dyn SmsSender>,
    pub revocations: Revocations,
    pub metrics: Metrics,
    pub hasher: Hasher,
}

impl Identity {
    pub fn new(parts: IdentityParts) -> Self {
        let config = parts.config;
        Self {
            db: parts.db,
            vault: parts.vault,
            pepper: config.keys.otp_pepper.clone(),
            hasher: parts.hasher,
            sms: parts.sms,
            tokens: TokenIssuer {
                keys: config.keys.access_tokens.clone(),
                issuer: format!("https://{}", config.shop_domain),
                verified: Arc::new(verified::VerifiedTokens::new(verified::DEFAULT_CAPACITY)),
            },
            revocations: parts.revocations,
            shop_domain: config.shop_domain.clone(),
            allowed_regions: config.identity.sms_allowed_regions.clone(),
            texts_per_ip: throttle::texts_per_address(),
            logins_per_ip: throttle::logins_per_address(),
            metrics: parts.metrics,
            platforms: platforms::Platforms::new(
                config.identity.apple.as_ref(),
                config.identity.google.as_ref(),
            ),
            second_factor: config.identity.second_factor,
            webauthn: Arc::new(
                passkeys::relying_party(&config.shop_domain, &config.identity.apps)
                    .expect("checked when the configuration was read"),
            ),
        }
    }

    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    pub(crate) fn parse_phone(&self, text: &str) -> AppResult<Phone> {
        let phone = Phone::parse(text)
            .map_err(|e| Problem::invalid("invalid_phone", "phone", e.to_string()))?;
        if let Some(allowed) = &self.allowed_regions
            && !allowed.iter().any(|r| r == phone.region())
        {
            return Err(Problem::invalid(
                "region_not_allowed",
                "phone",
                "This shop does not send texts to numbers of that country.",
            )
            .into());
        }
        Ok(phone)
    }

    pub(crate) fn limit_texts(&self, ip: IpAddr) -> AppResult<()> {
        self.texts_per_ip.check(ip).map_err(|wait| {
            Problem::too_many(wait, "Too many texts requested from this address.").into()
        })
    }

    pub(crate) async fn send_text(
        &self,
        to: &Phone,
        body: String,
    ) -> Result<(), crate::notify::sms::SmsError> {
        let message = SmsMessage {
            to: Sensitive::new(to.e164().to_owned()),
            body: Sensitive::new(body),
        };
        self.sms.send(&message).await
    }

    /// The text that carries a code, ending with the origin-bound line for SMS autofill.
    pub(crate) fn code_text(&self, purpose: &str, code: &str) -> String {
        let what = match purpose {
            SIGNUP => "sign-up",
            PHONE => "phone verification",
            LOGIN => "sign-in",
            _ => "password reset",
        };
        format!(
            "Your {domain} {what} code is {code}. It expires in 5 minutes; never share it.\n\n@{domain} #{code}",
            domain = self.shop_domain
        )
    }

    pub(crate) fn account_exists_text(&self) -> String {
        format!(
            "Someone tried to sign up at {domain} with this number, which already has an account. \
             If it was you, log in or reset your password; if not, ignore this text.",
            domain = self.shop_domain
        )
    }
}
