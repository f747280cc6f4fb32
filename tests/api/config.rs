use shopd::config::{Config, Environment, Vars, secrets};

fn valid() -> Vars {
    let mut vars = Vars::new(secrets::generate_all());
    vars.set("DATABASE_URL", "sqlite://data/test.db");
    vars
}

fn error_of(change: impl FnOnce(&mut Vars)) -> shopd::config::ConfigError {
    let mut vars = valid();
    change(&mut vars);
    Config::from_vars(&vars).expect_err("the configuration is refused")
}

#[test]
fn defaults_need_nothing_but_the_secrets() {
    let config = Config::from_vars(&valid()).unwrap();
    assert_eq!(config.environment, Environment::Development);
    assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(config.body_limit, 64 * 1024);
    assert_eq!(config.shop_currency, "EUR");
    assert_eq!(config.database.pool_timeout.as_secs(), 5);
}

#[test]
fn each_bad_value_is_refused_naming_its_variable() {
    let cases: &[(&str, &str)] = &[
        ("SHOPD_ENV", "staging"),
        ("SHOPD_BIND", "localhost"),
        ("SHOPD_BIND", "127.0.0.1:99999"),
        ("DATABASE_URL", "mysql://root@localhost/shop"),
        ("DATABASE_URL", "postgres://"),
        ("DATABASE_POOL_SIZE", "many"),
        ("DATABASE_POOL_SIZE", "0"),
        ("DATABASE_TIMEOUT", "5"),
        ("DATABASE_TIMEOUT", "5 minutes"),
        ("BODY_LIMIT", "lots"),
        ("SHOP_DOMAIN", "not a domain"),
        ("SHOP_CURRENCY", "euro"),
        ("SHOPD_WORKERS", "0"),
        ("PII_KEYS", "k1:not-base64!"),
        ("PII_KEYS", "k1:AAAA"),
        ("PII_KEYS", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        ("BLIND_INDEX_KEY", "short"),
        ("OTP_PEPPER", "c2hvcnQ="),
        ("ACCESS_TOKEN_KEYS", "t1:AAAA"),
        ("SMS_PROVIDER", "pigeon"),
        ("SMS_ALLOWED_REGIONS", "Britain"),
        ("ARGON2_MEMORY_KIB", "4"),
        ("CUSTOMER_SECOND_FACTOR", "sometimes"),
        ("APPLE_CLIENT_IDS", ","),
        (
            "GOOGLE_JWKS_URL",
            "https://www.googleapis.com/oauth2/v3/certs",
        ),
        ("APPLE_APP_IDS", "com.example.shop"),
        ("SMTP_URL", "mail.example.com"),
        ("SMTP_URL", "http://mail.example.com"),
        ("SMTP_URL", "smtp://mail.example.com?tls=opportunistic"),
        ("SMTP_URL", "smtp://user:password@mail.example.com?tls=none"),
        ("SMTP_TIMEOUT", "0s"),
        ("EMAIL_FROM", "the shop"),
        ("STAFF_ALERT_EMAIL", "orders"),
        ("EMAIL_RETRY_BASE", "0s"),
        ("EMAIL_RETRY_CAP", "1s"),
        ("EMAIL_POLL_INTERVAL", "soon"),
        ("PAYMENT_PROVIDER", "paypal"),
        ("ORDER_PAYMENT_TTL", "30"),
        ("ORDER_PAYMENT_TTL", "0s"),
        ("ORDER_PAYMENT_TTL", "8d"),
    ];
    for (var, value) in cases {
        let error = error_of(|vars| vars.set(var, *value));
        assert_eq!(error.var, *var, "{var}={value} gave {error}");
        assert!(
            error.to_string().starts_with(&format!("{var}: ")),
            "{error}"
        );
    }
}

#[test]
fn a_duplicate_master_key_id_is_refused() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let error = error_of(|vars| vars.set("PII_KEYS", format!("a:{key},a:{key}")));
    assert_eq!(error.var, "PII_KEYS");
    assert!(error.message.contains("twice"), "{error}");
}

#[test]
fn missing_secrets_are_named() {
    for var in [
        "PII_KEYS",
        "BLIND_INDEX_KEY",
        "OTP_PEPPER",
        "ACCESS_TOKEN_KEYS",
    ] {
        let error = error_of(|vars| vars.set(var, ""));
        assert_eq!(error.var, var);
    }
}

#[test]
fn production_needs_explicit_configuration() {
    let mut vars = valid();
    vars.set("SHOPD_ENV", "production");
    vars.set("DATABASE_URL", "");
    assert_eq!(Config::from_vars(&vars).unwrap_err().var, "DATABASE_URL");
    vars.set("DATABASE_URL", "postgres://shop@db.internal/shop");
    assert_eq!(Config::from_vars(&vars).unwrap_err().var, "SHOP_DOMAIN");
    vars.set("SHOP_DOMAIN", "shop.example.com");
    assert_eq!(Config::from_vars(&vars).unwrap_err().var, "SMS_PROVIDER");
    vars.set("SMS_PROVIDER", "log");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "SMS_PROVIDER",
        "codes never go to the log"
    );
    vars.set("SMS_PROVIDER", "twilio");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "TWILIO_ACCOUNT_SID"
    );
    vars.set("TWILIO_ACCOUNT_SID", "AC123");
    vars.set("TWILIO_AUTH_TOKEN", "token");
    vars.set("TWILIO_FROM", "+15005550006");
    vars.set("TWILIO_API_BASE", "http://127.0.0.1:9");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "TWILIO_API_BASE",
        "https only"
    );
    vars.set("TWILIO_API_BASE", "");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "SMS_ALLOWED_REGIONS"
    );
    vars.set("SMS_ALLOWED_REGIONS", "GB,IE");
    vars.set("ARGON2_MEMORY_KIB", "1024");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "ARGON2_MEMORY_KIB"
    );
    vars.set("ARGON2_MEMORY_KIB", "");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "SMTP_URL",
        "no .eml files in production"
    );
    vars.set("SMTP_URL", "smtp://mail.example.com:25?tls=none");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "SMTP_URL",
        "no unencrypted SMTP in production"
    );
    vars.set("SMTP_URL", "smtp://shop:password@mail.example.com");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "PAYMENT_PROVIDER"
    );
    vars.set("PAYMENT_PROVIDER", "sandbox");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "PAYMENT_PROVIDER",
        "the sandbox takes no real payments"
    );
    vars.set("PAYMENT_PROVIDER", "stripe");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "STRIPE_SECRET_KEY"
    );
    vars.set("STRIPE_SECRET_KEY", "pk_live_publishable");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "STRIPE_SECRET_KEY",
        "a publishable key is not a secret key"
    );
    vars.set("STRIPE_SECRET_KEY", "sk_live_0123456789");
    vars.set("STRIPE_API_BASE", "http://127.0.0.1:9");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "STRIPE_API_BASE",
        "https only"
    );
    vars.set("STRIPE_API_BASE", "");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "STRIPE_WEBHOOK_SECRETS",
        "no Stripe payments without their webhooks"
    );
    vars.set("STRIPE_WEBHOOK_SECRETS", "whsec_live_example");
    vars.set("WEBHOOK_TOLERANCE", "0s");
    assert_eq!(
        Config::from_vars(&vars).unwrap_err().var,
        "WEBHOOK_TOLERANCE",
        "never 0 = off"
    );
    vars.set("WEBHOOK_TOLERANCE", "");
    let config = Config::from_vars(&vars).unwrap();
    assert_eq!(config.environment, Environment::Production);
    assert_eq!(config.orders.payments.name(), "stripe");
    assert!(!format!("{config:?}").contains("sk_live_0123456789"));
}

#[test]
fn payments_default_to_the_sandbox_and_thirty_minutes_in_development() {
    let config = Config::from_vars(&valid()).unwrap();
    assert_eq!(config.orders.payments.name(), "sandbox");
    assert_eq!(config.orders.payment_ttl.as_secs(), 30 * 60);
    let mut vars = valid();
    vars.set("PAYMENT_PROVIDER", "stripe");
    vars.set("STRIPE_SECRET_KEY", "sk_test_123");
    vars.set("ORDER_PAYMENT_TTL", "15m");
    let config = Config::from_vars(&vars).unwrap();
    match &config.orders.payments {
        shopd::config::PaymentSettings::Stripe { api_base, .. } => {
            assert_eq!(api_base.as_str(), "https://api.stripe.com/")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(config.orders.payment_ttl.as_secs(), 15 * 60);
}

#[test]
fn e_mail_defaults_to_files_in_the_data_folder_from_the_shop_s_domain() {
    use shopd::config::{EmailTransport, SmtpSecurity};
    let mut vars = valid();
    vars.set("SHOPD_DATA_DIR", "/srv/shopd");
    vars.set("SHOP_DOMAIN", "shop.example.com");
    let config = Config::from_vars(&vars).unwrap();
    assert_eq!(
        config.email.transport,
        EmailTransport::Files("/srv/shopd/outbox".into())
    );
    assert_eq!(config.email.from, "shop@shop.example.com");
    assert!(config.email.staff_alert.is_none());
    assert_eq!(config.email.retry_base.as_secs(), 30);
    assert_eq!(config.email.retry_cap.as_secs(), 3600);

    vars.set("SMTP_URL", "smtp://mailer:hunter2-smtp@mail.example.com");
    vars.set("EMAIL_FROM", "Example Shop <orders@shop.example.com>");
    vars.set("STAFF_ALERT_EMAIL", "desk@shop.example.com");
    let config = Config::from_vars(&vars).unwrap();
    let EmailTransport::Smtp(smtp) = &config.email.transport else {
        panic!("SMTP")
    };
    assert_eq!(
        smtp.security,
        SmtpSecurity::StartTls,
        "STARTTLS required by default"
    );
    assert_eq!(smtp.port, 587);
    let printed = format!("{config:?}");
    assert!(!printed.contains("hunter2-smtp"), "{printed}");
    assert!(!printed.contains("desk@shop.example.com"), "{printed}");
}

#[test]
fn the_database_url_prints_without_its_password() {
    let mut vars = valid();
    vars.set(
        "DATABASE_URL",
        "postgres://shop:hunter2-secret@db.internal/shop",
    );
    let config = Config::from_vars(&vars).unwrap();
    let printed = format!("{} {:?}", config.database.url, config);
    assert!(!printed.contains("hunter2-secret"), "{printed}");
    for (var, value) in secrets::generate_all() {
        let _ = var;
        let material = value.split(':').next_back().unwrap().to_owned();
        assert!(!format!("{config:?}").contains(&material));
    }
}
