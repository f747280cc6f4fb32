//! E-mail, black-box: messages caused over HTTP (a password reset, a reused refresh token) or written into the
//! outbox as the order flow will, delivered by the real lettre SMTP transport to a real SMTP server on
//! 127.0.0.1 (`fake_smtp`). Every test checks that no log line holds the address.

use std::time::Duration;

use diesel::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};
use shopd::db::schema::outbox;
use shopd::notify::outbox::{Amount, Notification, OrderItem, OutboxRow, enqueue};

use crate::crypto::assert_nowhere_in_the_database;
use crate::fake_smtp::{FakeSmtp, Received};
use crate::helpers::{PASSWORD, TestApp, assert_not_logged, assert_problem, unique_phone};

/// An app that mails through `smtp`, retrying fast.
pub(crate) async fn mailing_app(
    smtp: &FakeSmtp,
    customise: impl FnOnce(&mut shopd::config::Vars),
) -> TestApp {
    let url = smtp.url();
    TestApp::spawn_with(move |vars| {
        vars.set("SMTP_URL", url);
        vars.set("SMTP_TIMEOUT", "2s");
        vars.set("EMAIL_RETRY_BASE", "200ms");
        vars.set("EMAIL_RETRY_CAP", "1s");
        vars.set("EMAIL_POLL_INTERVAL", "50ms");
        customise(vars);
    })
    .await
}

/// An address no other test uses.
fn unique_email() -> String {
    format!(
        "quillon.{}@distinctive.example",
        uuid::Uuid::new_v4().simple()
    )
}

/// A registered customer whose profile holds `email`: (phone, token pair).
async fn customer_with_email(app: &TestApp, email: &str) -> (String, Value) {
    let phone = unique_phone();
    let pair = app.register(&phone).await;
    let response = app
        .request(
            Method::PATCH,
            "/v1/me",
            pair["access_token"].as_str().unwrap(),
            Some(&json!({"email": email})),
        )
        .await;
    assert_eq!(response.status(), 200);
    (phone, pair)
}

/// Resets the password of `phone` with the code texted to it.
async fn reset_password(app: &TestApp, phone: &str) {
    let texts_before = app
        .twilio
        .messages()
        .iter()
        .filter(|m| m.to == phone)
        .count();
    let response = app
        .post_json("/v1/auth/password-reset", &json!({"phone": phone}))
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let mut code = None;
    for _ in 0..250 {
        let texts = app.twilio.messages();
        if texts.iter().filter(|m| m.to == phone).count() > texts_before {
            code = app.twilio.last_code_for(phone);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = app
        .post_json(
            "/v1/auth/password-reset/verify",
            &json!({
                "verification_id": body["verification_id"],
                "code": code.expect("the reset code was texted"),
                "new_password": "an entirely new passphrase",
            }),
        )
        .await;
    assert_eq!(response.status(), 204);
}

fn rows(app: &TestApp) -> Vec<OutboxRow> {
    outbox::table
        .select(OutboxRow::as_select())
        .order(outbox::created_at.asc())
        .load(&mut app.conn())
        .unwrap()
}

/// Waits up to 10 s for the outbox rows to satisfy `done`, and returns them.
async fn wait_for_rows(app: &TestApp, done: impl Fn(&[OutboxRow]) -> bool) -> Vec<OutboxRow> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = rows(app);
        if done(&rows) {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox never got there: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The outbox rows as every text and id they hold, to look for personal values in.
fn row_texts(rows: &[OutboxRow]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "{} {} {} {:?} {} {} {:?} {:?}",
                r.id,
                r.template,
                r.recipient_kind,
                r.customer_id,
                r.data,
                r.status,
                r.claimed_by,
                r.last_error
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn metric(app: &TestApp, name: &str) -> u64 {
    app.state
        .outbox
        .snapshot()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
}

fn assert_no_phone(mail: &Received, phone: &str) {
    let digits = phone.trim_start_matches('+');
    assert!(!mail.data.contains(digits), "the phone is in the message");
    assert!(!mail.data.contains(&phone[phone.len() - 9..]));
    let parsed = mail.parse();
    assert!(!parsed.text.contains(&phone[phone.len() - 9..]));
    assert!(!parsed.html.contains(&phone[phone.len() - 9..]));
}

#[tokio::test]
async fn a_password_change_is_mailed_over_smtp_in_text_and_html() {
    let smtp = FakeSmtp::start().await;
    let app = mailing_app(&smtp, |_| {}).await;
    let email = unique_email();
    let (phone, _) = customer_with_email(&app, &email).await;
    reset_password(&app, &phone).await;

    let received = smtp.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.to, vec![email.clone()]);
    assert_eq!(mail.from, "shop@shop.example.com");
    let parsed = mail.parse();
    assert!(parsed.content_type.starts_with("multipart/alternative"));
    assert_eq!(
        parsed.header("Subject"),
        Some("Your shop.example.com password was changed")
    );
    assert_eq!(parsed.header("To"), Some(email.as_str()));
    assert!(
        parsed
            .text
            .contains("The password of your shop.example.com account was changed on"),
        "{}",
        parsed.text
    );
    assert!(
        parsed
            .html
            .contains("<strong>shop.example.com</strong> account was changed")
    );
    assert!(!parsed.text.contains('<'), "the text part is plain");
    assert_no_phone(mail, &phone);

    let rows = wait_for_rows(&app, |r| r.iter().all(|r| r.status == "sent")).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (
            row.template.as_str(),
            row.recipient_kind.as_str(),
            row.attempts
        ),
        ("password_changed", "customer", 1)
    );
    assert_eq!(
        parsed.header("Message-ID"),
        Some(format!("<{}@shop.example.com>", row.id).as_str()),
        "a stable Message-ID: the outbox row's"
    );
    assert_eq!(metric(&app, "sent"), 1);

    let texts = row_texts(&rows);
    assert!(!texts.contains(&email) && !texts.contains("quillon"));
    assert!(!texts.contains(&phone[phone.len() - 9..]));
    assert_nowhere_in_the_database(&app, &[&email, "quillon", phone.trim_start_matches('+')]).await;
    assert_not_logged(&[&email, &phone]);
}

#[tokio::test]
async fn a_reused_refresh_token_raises_a_mailed_security_alert() {
    let smtp = FakeSmtp::start().await;
    let app = mailing_app(&smtp, |_| {}).await;
    let email = unique_email();
    let (phone, pair) = customer_with_email(&app, &email).await;
    let refreshed = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": pair["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    app.spent_past_the_grace_period(&pair["refresh_token"]);
    assert_problem(
        app.post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": pair["refresh_token"]}),
        )
        .await,
        401,
        "refresh_token_reused",
    )
    .await;

    let received = smtp.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.to, vec![email.clone()]);
    let parsed = mail.parse();
    assert_eq!(
        parsed.header("Subject"),
        Some("We logged one of your shop.example.com sessions out")
    );
    assert!(
        parsed
            .text
            .contains("an old login token of your shop.example.com account")
    );
    assert!(parsed.html.contains("change your password from the app"));
    assert_no_phone(mail, &phone);
    let rows = wait_for_rows(&app, |r| r.iter().all(|r| r.status == "sent")).await;
    assert_eq!(rows[0].template, "session_ended_by_token_reuse");
    assert_eq!(rows[0].customer_id.as_deref(), pair["customer_id"].as_str());
    assert_not_logged(&[&email]);
}

#[tokio::test]
async fn a_customer_without_an_email_gets_nothing_and_the_message_is_dropped() {
    let smtp = FakeSmtp::start().await;
    let app = mailing_app(&smtp, |_| {}).await;
    let phone = unique_phone();
    app.register(&phone).await;
    reset_password(&app, &phone).await;
    let rows = wait_for_rows(&app, |r| r.len() == 1 && r[0].status != "pending").await;
    assert_eq!(rows[0].status, "dropped");
    assert_eq!(rows[0].last_error.as_deref(), Some("no e-mail address"));
    assert_eq!(rows[0].attempts, 0);
    assert!(smtp.received().is_empty());
    assert_eq!(metric(&app, "dropped"), 1);
}

#[tokio::test]
async fn mail_waits_while_the_smtp_server_is_down_and_arrives_once_it_is_back() {
    let smtp = FakeSmtp::start().await;
    smtp.stop().await;
    let app = mailing_app(&smtp, |_| {}).await;
    let email = unique_email();
    let (phone, _) = customer_with_email(&app, &email).await;
    reset_password(&app, &phone).await;

    // Refused connections: attempts counted, backing off, the row still pending, the failure visible.
    let rows = wait_for_rows(&app, |r| r.len() == 1 && r[0].attempts >= 2).await;
    let row = &rows[0];
    assert_eq!(row.status, "pending");
    let error = row.last_error.as_deref().unwrap();
    assert!(!error.is_empty() && !error.contains(&email), "{error}");
    assert!(row.next_attempt_at > row.created_at);
    assert!(metric(&app, "failed_attempts") >= 2);
    let listed = shopd_outbox(&app, &["list", "--failed"]);
    assert!(
        listed.contains(&row.id) && listed.contains("retrying"),
        "{listed}"
    );
    assert!(!listed.contains(&email));

    smtp.resume().await;
    let received = smtp.wait_for(1).await;
    assert_eq!(received[0].to, vec![email.clone()]);
    let rows = wait_for_rows(&app, |r| r[0].status == "sent").await;
    assert!(rows[0].attempts >= 3);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(smtp.received().len(), 1, "delivered once");
    let listed = shopd_outbox(&app, &["list", "--failed"]);
    assert!(!listed.contains(&rows[0].id), "{listed}");
    assert_not_logged(&[&email]);
}

#[tokio::test]
async fn a_restart_between_the_commit_and_the_send_still_delivers_exactly_once() {
    let smtp = FakeSmtp::start().await;
    smtp.stop().await;
    // The first instance commits the cause and dies before mailing: its sender does not look again for an
    // hour, and the server is down anyway.
    let first = mailing_app(&smtp, |vars| vars.set("EMAIL_POLL_INTERVAL", "1h")).await;
    let email = unique_email();
    let (phone, _) = customer_with_email(&first, &email).await;
    reset_password(&first, &phone).await;
    let (db, vars) = (first.db.clone(), first.vars.clone());
    let rows = rows(&first);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "pending");
    // As if it had died holding the row: a claim that has yet to expire.
    let claim_ends = tokio::time::Instant::now() + Duration::from_secs(1);
    diesel::update(outbox::table.find(&rows[0].id))
        .set((
            outbox::claimed_by.eq("sender-that-crashed"),
            outbox::claimed_until.eq(chrono::Utc::now().naive_utc() + chrono::Duration::seconds(1)),
        ))
        .execute(&mut first.conn())
        .unwrap();
    first.stop().await;

    smtp.resume().await;
    let second = TestApp::spawn_on(db, Some(vars), |vars| {
        vars.set("EMAIL_POLL_INTERVAL", "50ms")
    })
    .await;
    let received = smtp.wait_for(1).await;
    assert!(
        tokio::time::Instant::now() >= claim_ends,
        "nobody sends a row while another holds its claim"
    );
    assert_eq!(received[0].to, vec![email.clone()]);
    let rows = wait_for_rows(&second, |r| r[0].status == "sent").await;
    assert_eq!(rows[0].claimed_by, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.received().len(), 1, "exactly once");
    assert_not_logged(&[&email]);
}

#[tokio::test]
async fn two_instances_never_send_one_message_twice() {
    let smtp = FakeSmtp::start().await;
    let a = mailing_app(&smtp, |_| {}).await;
    let b = TestApp::spawn_on(a.db.clone(), Some(a.vars.clone()), |_| {}).await;
    let email = unique_email();
    let (_, pair) = customer_with_email(&a, &email).await;
    let customer_id = pair["customer_id"].as_str().unwrap().to_owned();
    let n = 30;
    shopd::db::write_tx(&mut a.conn(), |conn| {
        for _ in 0..n {
            enqueue(
                conn,
                Notification::PasswordChanged {
                    customer_id: customer_id.clone(),
                },
            )?;
        }
        diesel::QueryResult::Ok(())
    })
    .unwrap();
    let received = smtp.wait_for(n).await;
    wait_for_rows(&a, |r| r.iter().all(|r| r.status == "sent")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received_later = smtp.received();
    assert_eq!(received_later.len(), n, "each once");
    let ids: std::collections::BTreeSet<String> = received
        .iter()
        .map(|m| m.parse().header("Message-ID").unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), n);
    assert_eq!(metric(&a, "sent") + metric(&b, "sent"), n as u64);
    assert!(rows(&a).iter().all(|r| r.attempts == 1));
}

#[tokio::test]
async fn order_messages_reach_the_customer_and_the_staff_with_no_personal_data_stored() {
    let smtp = FakeSmtp::start().await;
    let staff = "orders-desk@shop.example.com";
    let app = mailing_app(&smtp, |vars| vars.set("STAFF_ALERT_EMAIL", staff)).await;
    let email = unique_email();
    let (phone, pair) = customer_with_email(&app, &email).await;
    let customer_id = pair["customer_id"].as_str().unwrap().to_owned();
    let order_id = uuid::Uuid::now_v7().to_string();
    let total = Amount::new(2350, "EUR");
    shopd::db::write_tx(&mut app.conn(), |conn| {
        enqueue(
            conn,
            Notification::OrderConfirmation {
                customer_id: customer_id.clone(),
                order_id: order_id.clone(),
                items: vec![
                    OrderItem {
                        name: "Enamel mug <blue>".into(),
                        quantity: 2,
                    },
                    OrderItem {
                        name: "Thé vert".into(),
                        quantity: 1,
                    },
                ],
                total: total.clone(),
            },
        )?;
        enqueue(
            conn,
            Notification::OrderPaidStaffAlert {
                order_id: order_id.clone(),
                total: total.clone(),
            },
        )?;
        enqueue(
            conn,
            Notification::OrderShipped {
                customer_id: customer_id.clone(),
                order_id: order_id.clone(),
            },
        )?;
        enqueue(
            conn,
            Notification::Refunded {
                customer_id: customer_id.clone(),
                order_id: order_id.clone(),
                amount: Amount::new(999, "EUR"),
            },
        )
    })
    .unwrap();

    let received = smtp.wait_for(4).await;
    assert_eq!(received.len(), 4);
    let by_subject = |start: &str| {
        received
            .iter()
            .find(|m| {
                m.parse()
                    .header("Subject")
                    .is_some_and(|s| s.starts_with(start))
            })
            .unwrap_or_else(|| panic!("a message titled {start}…"))
    };
    let confirmation = by_subject("Your shop.example.com order");
    assert_eq!(confirmation.to, vec![email.clone()]);
    let parsed = confirmation.parse();
    assert!(parsed.text.contains(&order_id));
    assert!(
        parsed
            .text
            .contains("  - 2 × Enamel mug <blue>\n  - 1 × Thé vert"),
        "{}",
        parsed.text
    );
    assert!(parsed.text.contains("Total: 23.50 EUR"));
    assert!(
        parsed.html.contains("<li>2 × Enamel mug &lt;blue&gt;</li>"),
        "{}",
        parsed.html
    );
    assert_no_phone(confirmation, &phone);

    let alert = by_subject("New paid order");
    assert_eq!(alert.to, vec![staff.to_owned()]);
    let parsed = alert.parse();
    assert!(parsed.text.contains(&order_id) && parsed.text.contains("23.50 EUR"));
    for personal in [email.as_str(), &customer_id, "Enamel", "Thé"] {
        assert!(!alert.data.contains(personal), "order id and total only");
    }
    assert_no_phone(alert, &phone);

    let shipped = by_subject(&format!(
        "Your shop.example.com order {order_id} is on its way"
    ));
    assert_eq!(shipped.to, vec![email.clone()]);
    let refunded = by_subject(&format!(
        "Your shop.example.com order {order_id} was refunded"
    ));
    assert!(refunded.parse().text.contains("We refunded 9.99 EUR"));

    let rows = wait_for_rows(&app, |r| r.iter().all(|r| r.status == "sent")).await;
    assert_eq!(rows.len(), 4);
    let texts = row_texts(&rows);
    for personal in [email.as_str(), "quillon", staff, "orders-desk"] {
        assert!(!texts.contains(personal), "no address in the outbox");
    }
    assert!(!texts.contains(&phone[phone.len() - 9..]));
    assert!(texts.contains("Enamel mug"), "non-personal data is there");
    assert_nowhere_in_the_database(
        &app,
        &[&email, "quillon", staff, phone.trim_start_matches('+')],
    )
    .await;
    assert_not_logged(&[&email, staff]);
}

#[tokio::test]
async fn an_erased_customer_s_mail_is_dropped_and_the_staff_alert_needs_an_address() {
    let smtp = FakeSmtp::start().await;
    let app = mailing_app(&smtp, |_| {}).await;
    let email = unique_email();
    let (_, pair) = customer_with_email(&app, &email).await;
    let customer_id = pair["customer_id"].as_str().unwrap().to_owned();
    let response = app
        .request(
            Method::DELETE,
            "/v1/me",
            pair["access_token"].as_str().unwrap(),
            Some(&json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(response.status(), 204);
    shopd::db::write_tx(&mut app.conn(), |conn| {
        enqueue(
            conn,
            Notification::Refunded {
                customer_id: customer_id.clone(),
                order_id: "order-kept-for-the-books".into(),
                amount: Amount::new(100, "EUR"),
            },
        )?;
        enqueue(
            conn,
            Notification::OrderPaidStaffAlert {
                order_id: "order-2".into(),
                total: Amount::new(100, "EUR"),
            },
        )
    })
    .unwrap();
    let rows = wait_for_rows(&app, |r| {
        r.len() == 2 && r.iter().all(|r| r.status != "pending")
    })
    .await;
    let reasons: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.status.as_str(), r.last_error.as_deref()))
        .collect();
    assert!(
        reasons.contains(&("dropped", Some("customer erased"))),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("dropped", Some("no STAFF_ALERT_EMAIL set"))),
        "{reasons:?}"
    );
    assert!(smtp.received().is_empty());
}

#[tokio::test]
async fn a_refused_recipient_fails_for_good_visibly_and_unlogged() {
    let smtp = FakeSmtp::start().await;
    smtp.reject_recipients(true);
    let app = mailing_app(&smtp, |_| {}).await;
    let email = unique_email();
    let (phone, _) = customer_with_email(&app, &email).await;
    reset_password(&app, &phone).await;
    let rows = wait_for_rows(&app, |r| r.len() == 1 && r[0].status != "pending").await;
    let row = &rows[0];
    assert_eq!((row.status.as_str(), row.attempts), ("failed", 1));
    let error = row.last_error.as_deref().unwrap();
    assert!(
        error.contains("550") && error.contains("[redacted]"),
        "{error}"
    );
    assert!(
        !error.contains(&email) && !error.contains("quillon"),
        "{error}"
    );
    assert_eq!(metric(&app, "failed"), 1);
    let listed = shopd_outbox(&app, &["list", "--failed"]);
    assert!(
        listed.contains(&row.id) && listed.contains("failed"),
        "{listed}"
    );
    assert!(!listed.contains(&email));

    // Once the cause is fixed, an operator queues it again.
    smtp.reject_recipients(false);
    let retried = shopd_outbox(&app, &["retry", &row.id]);
    assert!(retried.contains("queued again"), "{retried}");
    smtp.wait_for(1).await;
    assert_eq!(smtp.received()[0].to, vec![email.clone()]);
    assert_not_logged(&[&email]);
}

#[tokio::test]
async fn without_smtp_url_mail_is_written_as_eml_files_in_the_data_folder() {
    let app = TestApp::spawn().await;
    let email = unique_email();
    let (phone, _) = customer_with_email(&app, &email).await;
    reset_password(&app, &phone).await;
    wait_for_rows(&app, |r| r.len() == 1 && r[0].status == "sent").await;
    let dir = app.db.dir.path().join("outbox");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("Subject: Your shop.example.com password was changed"));
    assert!(text.contains(&format!("To: {email}")));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o700,
        "development mail is personal: the folder is private"
    );
    assert_not_logged(&[&email]);
}

/// Runs `shopd outbox …` against the app's database, as an operator would, and returns its standard output.
fn shopd_outbox(app: &TestApp, args: &[&str]) -> String {
    let out = app.cli(&[&["outbox"], args].concat(), "");
    assert!(
        out.status.success(),
        "shopd outbox ended with {:?}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}
