//! One typed configuration, built from environment variables and validated at start. It is passed in, never
//! global, so each test builds its own. `docs/configuration.md` describes every variable.

pub mod edge;
pub mod email;
pub mod parse;
pub mod secrets;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::jwt::SigningKeys;
use crate::crypto::webhook::WebhookSecrets;
use crate::crypto::{BlindIndexKey, MacKey, MasterKeyRing};
use crate::domain::Sensitive;

pub use edge::{
    AttestationConfig, AttestationMode, EdgeConfig, MetricsConfig, RateLimits, ServerLimits,
    TlsConfig, TrustedProxies,
};
pub use email::{EmailConfig, EmailTransport, SmtpSecurity, SmtpSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Where the data lives, chosen by the scheme of `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(Sensitive<String>),
}

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let url = url::Url::parse(text).map_err(|e| format!("is not a valid URL: {e}"))?;
            if url.host_str().is_none_or(str::is_empty)
                && !url.query().unwrap_or("").contains("host=")
            {
                return Err("names no host".into());
            }
            return Ok(Self::Postgres(Sensitive::new(text.to_owned())));
        }
        let path = text.strip_prefix("sqlite://").unwrap_or(text);
        if path.is_empty() {
            return Err("names no database".into());
        }
        if path.contains("://") {
            return Err("has an unknown scheme (use sqlite://path or postgres://…)".into());
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Printable without the password.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => match url::Url::parse(url.expose()) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("[redacted]"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("postgres://[unparseable]"),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub pool_size: u32,
    /// How long a request waits for a pooled connection before it gets a 503.
    pub pool_timeout: Duration,
}

/// The keys of shopd. Shared, never copied out.
#[derive(Debug, Clone)]
pub struct Keys {
    pub pii: Arc<MasterKeyRing>,
    pub blind_index: Arc<BlindIndexKey>,
    pub otp_pepper: Arc<MacKey>,
    pub access_tokens: Arc<SigningKeys>,
}

/// Where texts go.
#[derive(Debug, Clone)]
pub enum SmsSettings {
    /// Development only: the text is written to the log.
    Log,
    Twilio {
        account_sid: String,
        auth_token: Sensitive<String>,
        from: String,
        api_base: url::Url,
    },
}

/// argon2id cost. Production refuses anything below the defaults (m=19456 KiB, t=2, p=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHashing {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl PasswordHashing {
    pub const PRODUCTION: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub sms: SmsSettings,
    /// ISO 3166-1 alpha-2 regions that may be texted; `None` (development only) allows every region.
    pub sms_allowed_regions: Option<Vec<String>>,
    pub password_hashing: PasswordHashing,
    /// Whether a clerk needs a second factor to sign in (`STAFF_CLERK_SECOND_FACTOR`, `required` by default);
    /// managers and admins always do.
    pub clerks_need_second_factor: bool,
    /// Sign in with Apple (`APPLE_CLIENT_IDS`); off when unset.
    pub apple: Option<SignInProvider>,
    /// Sign in with Google (`GOOGLE_CLIENT_IDS`); off when unset.
    pub google: Option<SignInProvider>,
    /// The shop's apps, which may use the domain's passkeys.
    pub apps: AppLinks,
    /// When a customer's password sign-in needs a second factor (`CUSTOMER_SECOND_FACTOR`).
    pub second_factor: SecondFactorPolicy,
}

/// When a password sign-in also needs a code texted to the verified phone (or a passkey sign-in instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorPolicy {
    /// On a device the customer has not signed in on with a second factor before (the default).
    NewDevice,
    Always,
    Off,
}

/// The apps allowed to use `SHOP_DOMAIN`'s passkeys: served in `/.well-known/` for iOS and Android, and (for
/// Android) the origins its passkey responses carry.
#[derive(Debug, Clone, Default)]
pub struct AppLinks {
    /// `APPLE_APP_IDS`: `TEAMID.bundle.id` each.
    pub apple_app_ids: Vec<String>,
    /// `ANDROID_APP_PACKAGE` and `ANDROID_CERT_FINGERPRINTS`.
    pub android: Option<AndroidApp>,
}

#[derive(Debug, Clone)]
pub struct AndroidApp {
    pub package: String,
    /// The SHA-256 of each signing certificate of the app.
    pub cert_fingerprints: Vec<[u8; 32]>,
}

/// A platform sign-in as configured: the app's client (or bundle) ids its ID tokens must name, and where the
/// provider publishes its keys.
#[derive(Debug, Clone)]
pub struct SignInProvider {
    pub client_ids: Vec<String>,
    pub jwks_url: url::Url,
}

/// Which payment provider creates payments.
#[derive(Debug, Clone)]
pub enum PaymentSettings {
    /// Development only: no outside call; `shopd simulate-payment` plays the provider.
    Sandbox,
    Stripe {
        secret_key: Sensitive<String>,
        api_base: url::Url,
    },
}

impl PaymentSettings {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Stripe { .. } => "stripe",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OrdersConfig {
    pub payments: PaymentSettings,
    /// How long an unpaid order holds its stock before it expires (`ORDER_PAYMENT_TTL`).
    pub payment_ttl: Duration,
}

/// Payment webhooks: the secrets of each scheme (several at once while rotating), the replay window and how
/// long deliveries are kept for audit.
#[derive(Debug, Clone)]
pub struct WebhooksConfig {
    pub stripe: Option<WebhookSecrets>,
    pub standard: Option<WebhookSecrets>,
    /// Both directions; never zero.
    pub tolerance: Duration,
    pub retention: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub bind: SocketAddr,
    pub database: DatabaseConfig,
    pub shop_domain: String,
    pub shop_currency: String,
    pub body_limit: usize,
    pub data_dir: PathBuf,
    pub log_filter: String,
    /// HTTP worker threads; the number of cores by default.
    pub workers: usize,
    pub keys: Keys,
    pub identity: IdentityConfig,
    /// Attestation, TLS, proxies, rate limits, server limits, metrics.
    pub edge: EdgeConfig,
    pub email: EmailConfig,
    pub orders: OrdersConfig,
    pub webhooks: WebhooksConfig,
}

/// A configuration problem, naming the variable at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &str, message: impl Into<String>) -> Self {
        Self {
            var: var.to_owned(),
            message: message.into(),
        }
    }
}

/// The raw variables a `Config` is built from; empty values count as unset.
#[derive(Debug, Clone, Default)]
pub struct Vars(BTreeMap<String, String>);

impl Vars {
    pub fn new<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_owned(), value.into());
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Adds `name` only when it is unset.
    pub fn set_default(&mut self, name: &str, value: &str) {
        if self.get(name).is_none() {
            self.set(name, value);
        }
    }
}

/// What loading the process environment did besides building the configuration.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Set when development keys were read from (or generated into) this file.
    pub dev_keys_file: Option<PathBuf>,
    pub dev_keys_generated: bool,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "data";

impl Config {
    /// Where the staff console is, for links and messages: `https://SHOP_DOMAIN` in production, the address
    /// shopd listens on in development.
    pub fn console_origin(&self) -> String {
        match self.environment {
            Environment::Production => format!("https://{}", self.shop_domain),
            Environment::Development => {
                let scheme = if self.edge.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", self.bind)
            }
        }
    }

    /// Builds the configuration of a real start: the process environment, a `.env` file in development, and
    /// in development the generated `data/dev-keys.env` for every secret left unset.
    pub fn load() -> Result<(Self, LoadReport), ConfigError> {
        let mut vars = Vars::new(std::env::vars());
        let environment = environment_of(&vars)?;
        if environment == Environment::Development
            && let Ok(text) = std::fs::read_to_string(".env")
        {
            for (k, v) in secrets::parse_env_lines(&text) {
                vars.set_default(&k, &v);
            }
        }
        let mut report = LoadReport::default();
        let data_dir = PathBuf::from(vars.get("SHOPD_DATA_DIR").unwrap_or(DEFAULT_DATA_DIR));
        let dev_keys_path = data_dir.join("dev-keys.env");
        match environment {
            Environment::Development => {
                let missing = secrets::SECRETS.iter().any(|s| vars.get(s.var).is_none());
                if missing {
                    let (values, generated) =
                        secrets::ensure_dev_keys(&dev_keys_path).map_err(|e| {
                            ConfigError::new(
                                "SHOPD_DATA_DIR",
                                format!("cannot write {}: {e}", dev_keys_path.display()),
                            )
                        })?;
                    for (k, v) in values {
                        vars.set_default(&k, &v);
                    }
                    report.dev_keys_file = Some(dev_keys_path);
                    report.dev_keys_generated = generated;
                }
            }
            Environment::Production => refuse_dev_keys(&vars, &dev_keys_path)?,
        }
        Ok((Self::from_vars(&vars)?, report))
    }

    /// Builds and validates a configuration from `vars` alone: no files, no process environment.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let environment = environment_of(vars)?;
        let production = environment == Environment::Production;
        let required = |name: &str| -> Result<Option<&str>, ConfigError> {
            match vars.get(name) {
                None if production => Err(ConfigError::new(
                    name,
                    "is required when SHOPD_ENV=production",
                )),
                v => Ok(v),
            }
        };

        let bind = vars
            .get("SHOPD_BIND")
            .unwrap_or(DEFAULT_BIND)
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::new("SHOPD_BIND", "is not an address like 127.0.0.1:8080"))?;
        let data_dir = PathBuf::from(vars.get("SHOPD_DATA_DIR").unwrap_or(DEFAULT_DATA_DIR));
        let default_db = format!("sqlite://{}", data_dir.join("shopd.db").display());
        let url_text = required("DATABASE_URL")?.unwrap_or(&default_db);
        let url = DatabaseUrl::parse(url_text).map_err(|e| ConfigError::new("DATABASE_URL", e))?;
        let pool_size = number(vars, "DATABASE_POOL_SIZE", 10u32)?;
        if !(1..=500).contains(&pool_size) {
            return Err(ConfigError::new(
                "DATABASE_POOL_SIZE",
                "must be from 1 to 500",
            ));
        }
        let pool_timeout = duration(vars, "DATABASE_TIMEOUT", "5s")?;

        let shop_domain = required("SHOP_DOMAIN")?.unwrap_or("localhost").to_owned();
        if !is_domain(&shop_domain) {
            return Err(ConfigError::new(
                "SHOP_DOMAIN",
                "is not a domain name like shop.example.com",
            ));
        }
        let shop_currency = vars.get("SHOP_CURRENCY").unwrap_or("EUR").to_owned();
        if shop_currency.len() != 3 || !shop_currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ConfigError::new(
                "SHOP_CURRENCY",
                "is not an ISO 4217 code like EUR",
            ));
        }
        let body_limit = match vars.get("BODY_LIMIT") {
            None => 64 * 1024,
            Some(text) => parse::byte_size(text).map_err(|e| ConfigError::new("BODY_LIMIT", e))?,
        };

        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = number(vars, "SHOPD_WORKERS", cores)?;
        if !(1..=256).contains(&workers) {
            return Err(ConfigError::new("SHOPD_WORKERS", "must be from 1 to 256"));
        }

        let keys = Keys {
            pii: Arc::new(
                MasterKeyRing::parse(required_secret(vars, "PII_KEYS")?)
                    .map_err(|e| ConfigError::new("PII_KEYS", e.to_string()))?,
            ),
            blind_index: Arc::new(
                BlindIndexKey::parse(required_secret(vars, "BLIND_INDEX_KEY")?)
                    .map_err(|e| ConfigError::new("BLIND_INDEX_KEY", e.to_string()))?,
            ),
            otp_pepper: Arc::new(
                MacKey::parse("OTP_PEPPER", required_secret(vars, "OTP_PEPPER")?)
                    .map_err(|e| ConfigError::new("OTP_PEPPER", e.to_string()))?,
            ),
            access_tokens: Arc::new(
                SigningKeys::parse(required_secret(vars, "ACCESS_TOKEN_KEYS")?)
                    .map_err(|e| ConfigError::new("ACCESS_TOKEN_KEYS", e.to_string()))?,
            ),
        };
        let identity = identity_config(vars, production)?;
        crate::auth::passkeys::relying_party(&shop_domain, &identity.apps).map_err(|e| {
            ConfigError::new(
                "SHOP_DOMAIN",
                format!("is not a WebAuthn relying party for passkeys: {e}"),
            )
        })?;
        let edge = edge::edge_config(vars)?;
        let email = email::email_config(vars, production, &shop_domain, &data_dir)?;
        let orders = orders_config(vars, production)?;
        let webhooks = webhooks_config(vars, &orders.payments, production)?;

        Ok(Self {
            environment,
            bind,
            database: DatabaseConfig {
                url,
                pool_size,
                pool_timeout,
            },
            shop_domain,
            shop_currency,
            body_limit,
            data_dir,
            log_filter: vars.get("RUST_LOG").unwrap_or("info").to_owned(),
            workers,
            keys,
            identity,
            edge,
            email,
            orders,
            webhooks,
        })
    }
}

fn identity_config(vars: &Vars, production: bool) -> Result<IdentityConfig, ConfigError> {
    let sms = match vars.get("SMS_PROVIDER") {
        None if production => {
            return Err(ConfigError::new(
                "SMS_PROVIDER",
                "is required when SHOPD_ENV=production (twilio)",
            ));
        }
        None => SmsSettings::Log,
        Some("log") if !production => SmsSettings::Log,
        Some("log") => {
            return Err(ConfigError::new(
                "SMS_PROVIDER",
                "`log` writes codes to the log and is refused in production",
            ));
        }
        Some("twilio") => {
            let need = |name: &str| {
                vars.get(name)
                    .map(str::to_owned)
                    .ok_or_else(|| ConfigError::new(name, "is required when SMS_PROVIDER=twilio"))
            };
            let api_base = vars
                .get("TWILIO_API_BASE")
                .unwrap_or("https://api.twilio.com");
            let api_base = url::Url::parse(api_base)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| ConfigError::new("TWILIO_API_BASE", "is not an http(s) URL"))?;
            if production && api_base.scheme() != "https" {
                return Err(ConfigError::new(
                    "TWILIO_API_BASE",
                    "must be https in production",
                ));
            }
            SmsSettings::Twilio {
                account_sid: need("TWILIO_ACCOUNT_SID")?,
                auth_token: Sensitive::new(need("TWILIO_AUTH_TOKEN")?),
                from: need("TWILIO_FROM")?,
                api_base,
            }
        }
        Some(other) => {
            return Err(ConfigError::new(
                "SMS_PROVIDER",
                format!("`{other}` is not `log` or `twilio`"),
            ));
        }
    };
    let sms_allowed_regions = match vars.get("SMS_ALLOWED_REGIONS") {
        None if production => {
            return Err(ConfigError::new(
                "SMS_ALLOWED_REGIONS",
                "is required when SHOPD_ENV=production (the regions your customers live in, like GB,IE)",
            ));
        }
        None => None,
        Some(text) => {
            let regions: Vec<String> = parse::list(text)
                .into_iter()
                .map(|r| r.to_uppercase())
                .collect();
            if regions.is_empty()
                || !regions
                    .iter()
                    .all(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()))
            {
                return Err(ConfigError::new(
                    "SMS_ALLOWED_REGIONS",
                    "is not a list of ISO 3166-1 alpha-2 codes like GB,IE",
                ));
            }
            Some(regions)
        }
    };
    let defaults = PasswordHashing::PRODUCTION;
    let password_hashing = PasswordHashing {
        memory_kib: number(vars, "ARGON2_MEMORY_KIB", defaults.memory_kib)?,
        iterations: number(vars, "ARGON2_ITERATIONS", defaults.iterations)?,
        parallelism: 1,
    };
    if password_hashing.memory_kib < 8 || password_hashing.iterations < 1 {
        return Err(ConfigError::new(
            "ARGON2_MEMORY_KIB",
            "argon2 needs m >= 8 KiB and t >= 1",
        ));
    }
    if production
        && (password_hashing.memory_kib < defaults.memory_kib
            || password_hashing.iterations < defaults.iterations)
    {
        return Err(ConfigError::new(
            "ARGON2_MEMORY_KIB",
            "production refuses an argon2 cost below m=19456 KiB, t=2",
        ));
    }
    let clerks_need_second_factor = match vars.get("STAFF_CLERK_SECOND_FACTOR") {
        None | Some("required") => true,
        Some("optional") => false,
        Some(other) => {
            return Err(ConfigError::new(
                "STAFF_CLERK_SECOND_FACTOR",
                format!("`{other}` is not `required` or `optional`"),
            ));
        }
    };
    Ok(IdentityConfig {
        sms,
        sms_allowed_regions,
        password_hashing,
        clerks_need_second_factor,
        apple: sign_in_provider(
            vars,
            "APPLE",
            "https://appleid.apple.com/auth/keys",
            production,
        )?,
        google: sign_in_provider(
            vars,
            "GOOGLE",
            "https://www.googleapis.com/oauth2/v3/certs",
            production,
        )?,
        apps: app_links(vars)?,
        second_factor: match vars.get("CUSTOMER_SECOND_FACTOR") {
            None | Some("new_device") => SecondFactorPolicy::NewDevice,
            Some("always") => SecondFactorPolicy::Always,
            Some("off") => SecondFactorPolicy::Off,
            Some(other) => {
                return Err(ConfigError::new(
                    "CUSTOMER_SECOND_FACTOR",
                    format!("`{other}` is not `new_device`, `always` or `off`"),
                ));
            }
        },
    })
}

fn app_links(vars: &Vars) -> Result<AppLinks, ConfigError> {
    let apple_app_ids = vars
        .get("APPLE_APP_IDS")
        .map(parse::list)
        .unwrap_or_default();
    if let Some(bad) = apple_app_ids.iter().find(|id| {
        let (team, bundle) = id.split_once('.').unwrap_or_default();
        team.len() != 10 || !team.bytes().all(|b| b.is_ascii_alphanumeric()) || bundle.is_empty()
    }) {
        return Err(ConfigError::new(
            "APPLE_APP_IDS",
            format!("`{bad}` is not TEAMID.bundle.id (a 10-character team id)"),
        ));
    }
    let android = match (
        vars.get("ANDROID_APP_PACKAGE"),
        vars.get("ANDROID_CERT_FINGERPRINTS"),
    ) {
        (None, None) => None,
        (Some(package), Some(prints)) => {
            let cert_fingerprints = parse::list(prints)
                .iter()
                .map(|p| {
                    let bytes = hex::decode(p.replace(':', "")).ok()?;
                    <[u8; 32]>::try_from(bytes).ok()
                })
                .collect::<Option<Vec<_>>>()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        "ANDROID_CERT_FINGERPRINTS",
                        "is not a list of SHA-256 fingerprints like 14:6D:E9:…",
                    )
                })?;
            Some(AndroidApp {
                package: package.to_owned(),
                cert_fingerprints,
            })
        }
        (Some(_), None) => {
            return Err(ConfigError::new(
                "ANDROID_CERT_FINGERPRINTS",
                "is required with ANDROID_APP_PACKAGE",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "ANDROID_APP_PACKAGE",
                "is required with ANDROID_CERT_FINGERPRINTS",
            ));
        }
    };
    Ok(AppLinks {
        apple_app_ids,
        android,
    })
}

/// `{PREFIX}_CLIENT_IDS` (a list; unset turns the provider off) and `{PREFIX}_JWKS_URL` (the provider's own by
/// default; https only in production).
fn sign_in_provider(
    vars: &Vars,
    prefix: &str,
    default_jwks: &str,
    production: bool,
) -> Result<Option<SignInProvider>, ConfigError> {
    let ids_var = format!("{prefix}_CLIENT_IDS");
    let url_var = format!("{prefix}_JWKS_URL");
    let Some(ids) = vars.get(&ids_var) else {
        if vars.get(&url_var).is_some() {
            return Err(ConfigError::new(
                &url_var,
                format!("is set but {ids_var} is not"),
            ));
        }
        return Ok(None);
    };
    let client_ids = parse::list(ids);
    if client_ids.is_empty() || client_ids.iter().any(|id| id.len() > 200) {
        return Err(ConfigError::new(
            &ids_var,
            "is not a list of the app's client or bundle ids",
        ));
    }
    let jwks_url = url::Url::parse(vars.get(&url_var).unwrap_or(default_jwks))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| ConfigError::new(&url_var, "is not an http(s) URL"))?;
    if production && jwks_url.scheme() != "https" {
        return Err(ConfigError::new(&url_var, "must be https in production"));
    }
    Ok(Some(SignInProvider {
        client_ids,
        jwks_url,
    }))
}

/// The shortest and longest `ORDER_PAYMENT_TTL` accepted.
const PAYMENT_TTL_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(7 * 86_400));

fn webhooks_config(
    vars: &Vars,
    payments: &PaymentSettings,
    production: bool,
) -> Result<WebhooksConfig, ConfigError> {
    let secrets = |name: &str, parse: fn(&[String]) -> Result<WebhookSecrets, String>| {
        vars.get(name)
            .map(|text| parse(&parse::list(text)).map_err(|e| ConfigError::new(name, e)))
            .transpose()
    };
    let stripe = secrets("STRIPE_WEBHOOK_SECRETS", WebhookSecrets::stripe)?;
    let standard = secrets("STANDARD_WEBHOOK_SECRETS", WebhookSecrets::standard)?;
    if production && matches!(payments, PaymentSettings::Stripe { .. }) && stripe.is_none() {
        return Err(ConfigError::new(
            "STRIPE_WEBHOOK_SECRETS",
            "is required with PAYMENT_PROVIDER=stripe (whsec_… from the Stripe dashboard)",
        ));
    }
    let tolerance = duration(vars, "WEBHOOK_TOLERANCE", "300s")?;
    if tolerance.is_zero() || tolerance > Duration::from_secs(3600) {
        return Err(ConfigError::new(
            "WEBHOOK_TOLERANCE",
            "must be more than 0 and at most 1h",
        ));
    }
    let retention = duration(vars, "WEBHOOK_RETENTION", "90d")?;
    if retention < Duration::from_secs(86_400) {
        return Err(ConfigError::new("WEBHOOK_RETENTION", "must be at least 1d"));
    }
    Ok(WebhooksConfig {
        stripe,
        standard,
        tolerance,
        retention,
    })
}

fn orders_config(vars: &Vars, production: bool) -> Result<OrdersConfig, ConfigError> {
    let payments = match vars.get("PAYMENT_PROVIDER") {
        None if production => {
            return Err(ConfigError::new(
                "PAYMENT_PROVIDER",
                "is required when SHOPD_ENV=production (stripe)",
            ));
        }
        Some("sandbox") if production => {
            return Err(ConfigError::new(
                "PAYMENT_PROVIDER",
                "`sandbox` takes no real payments and is refused in production",
            ));
        }
        None | Some("sandbox") => PaymentSettings::Sandbox,
        Some("stripe") => {
            let secret_key = vars.get("STRIPE_SECRET_KEY").ok_or_else(|| {
                ConfigError::new(
                    "STRIPE_SECRET_KEY",
                    "is required when PAYMENT_PROVIDER=stripe",
                )
            })?;
            if !(secret_key.starts_with("sk_") || secret_key.starts_with("rk_"))
                || secret_key
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ConfigError::new(
                    "STRIPE_SECRET_KEY",
                    "is not a Stripe secret or restricted key (sk_… or rk_…)",
                ));
            }
            let api_base = vars
                .get("STRIPE_API_BASE")
                .unwrap_or(crate::payments::stripe::STRIPE_API_BASE);
            let api_base = url::Url::parse(api_base)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| ConfigError::new("STRIPE_API_BASE", "is not an http(s) URL"))?;
            if production && api_base.scheme() != "https" {
                return Err(ConfigError::new(
                    "STRIPE_API_BASE",
                    "must be https in production",
                ));
            }
            PaymentSettings::Stripe {
                secret_key: Sensitive::new(secret_key.to_owned()),
                api_base,
            }
        }
        Some(other) => {
            return Err(ConfigError::new(
                "PAYMENT_PROVIDER",
                format!("`{other}` is not `sandbox` or `stripe`"),
            ));
        }
    };
    let payment_ttl = duration(vars, "ORDER_PAYMENT_TTL", "30m")?;
    if !(PAYMENT_TTL_RANGE.0..=PAYMENT_TTL_RANGE.1).contains(&payment_ttl) {
        return Err(ConfigError::new(
            "ORDER_PAYMENT_TTL",
            "must be from 100ms to 7d",
        ));
    }
    Ok(OrdersConfig {
        payments,
        payment_ttl,
    })
}

fn environment_of(vars: &Vars) -> Result<Environment, ConfigError> {
    match vars.get("SHOPD_ENV") {
        None | Some("development") => Ok(Environment::Development),
        Some("production") => Ok(Environment::Production),
        Some(_) => Err(ConfigError::new(
            "SHOPD_ENV",
            "must be `development` or `production`",
        )),
    }
}

/// Secrets have no default anywhere: development fills them from `data/dev-keys.env` before this runs.
fn required_secret<'a>(vars: &'a Vars, name: &str) -> Result<&'a str, ConfigError> {
    vars.get(name).ok_or_else(|| {
        ConfigError::new(
            name,
            "is not set (run `shopd keys generate` to make a set of secrets)",
        )
    })
}

/// Production refuses a secret that is also in the development key file, the tell-tale of a copied dev set.
fn refuse_dev_keys(vars: &Vars, dev_keys_path: &Path) -> Result<(), ConfigError> {
    let Ok(text) = std::fs::read_to_string(dev_keys_path) else {
        return Ok(());
    };
    let dev = secrets::parse_env_lines(&text);
    for spec in secrets::SECRETS {
        if let (Some(value), Some(dev_value)) = (vars.get(spec.var), dev.get(spec.var))
            && crate::crypto::constant_time_eq(value.as_bytes(), dev_value.as_bytes())
        {
            return Err(ConfigError::new(
                spec.var,
                format!(
                    "is a development key from {}; production needs its own (`shopd keys generate`)",
                    dev_keys_path.display()
                ),
            ));
        }
    }
    Ok(())
}

fn number<T: std::str::FromStr>(vars: &Vars, name: &str, default: T) -> Result<T, ConfigError> {
    match vars.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| ConfigError::new(name, format!("`{text}` is not a whole number"))),
    }
}

fn duration(vars: &Vars, name: &str, default: &str) -> Result<Duration, ConfigError> {
    parse::duration(vars.get(name).unwrap_or(default)).map_err(|e| ConfigError::new(name, e))
}

fn is_domain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
