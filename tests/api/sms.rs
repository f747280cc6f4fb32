//! The real `TwilioSender` against the fake Twilio over HTTP: what arrives, what is retried, what is refused,
//! and what never reaches a log or a `{:?}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shopd::domain::Sensitive;
use shopd::notify::sms::{SmsError, SmsMessage, SmsSender, TwilioConfig, TwilioSender};

use crate::fake_twilio::{FakeTwilio, ReceivedSms};
use crate::helpers::{captured_logs, init_capture};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "tok-3f9c1e7a52d84b6b9e0d7c21";
const FROM: &str = "+15005550006";

async fn fake() -> FakeTwilio {
    init_capture();
    FakeTwilio::start(SID, TOKEN, FROM).await
}

fn config(fake: &FakeTwilio, token: &str) -> TwilioConfig {
    TwilioConfig {
        account_sid: SID.to_owned(),
        auth_token: Sensitive::new(token.to_owned()),
        from: FROM.to_owned(),
        api_base: url::Url::parse(&fake.base_url).unwrap(),
    }
}

/// Fails naming the value, never printing the logs (which would put it in the test output anyway).
fn assert_not_logged(values: &[&str]) {
    let logs = captured_logs();
    for value in values {
        assert!(!logs.contains(value), "{value:?} reached the log");
    }
}

#[tokio::test]
async fn a_message_arrives_with_the_right_to_from_body_and_credentials() {
    let fake = fake().await;
    let sender: Arc<dyn SmsSender> = Arc::new(TwilioSender::new(config(&fake, TOKEN)));
    let body = "Your shop code is 314159\n\n@shop.example.com #314159";
    let message = SmsMessage::new("+447700900101", body);

    sender.send(&message).await.expect("sent");

    assert_eq!(
        fake.messages(),
        vec![ReceivedSms {
            to: "+447700900101".into(),
            from: FROM.into(),
            body: body.into(),
        }]
    );
    assert_eq!(fake.request_count(), 1);
    assert_eq!(
        fake.last_code_for("+447700900101").as_deref(),
        Some("314159")
    );
    assert_eq!(fake.last_code_for("+447700900999"), None);
    assert!(captured_logs().contains("SMS accepted by Twilio"));
    assert_not_logged(&["447700900101", "Your shop code is", "#314159", TOKEN]);
}

#[tokio::test]
async fn wrong_credentials_are_refused_after_one_attempt() {
    let fake = fake().await;
    let sender = TwilioSender::new(config(&fake, "not-the-token"));
    let message = SmsMessage::new("+447700900102", "Your shop code is 271828 #271828");

    let error = sender.send(&message).await.expect_err("refused");

    let SmsError::Refused(detail) = &error else {
        panic!("expected Refused, got {error:?}");
    };
    assert!(
        detail.contains("401") && detail.contains("20003"),
        "{detail}"
    );
    assert_eq!(fake.request_count(), 1);
    assert!(fake.messages().is_empty());
    assert_not_logged(&["447700900102", "Your shop code is", "not-the-token"]);
}

#[tokio::test]
async fn any_other_4xx_is_refused_at_once() {
    let fake = fake().await;
    fake.fail_next(1, 400);
    let sender = TwilioSender::new(config(&fake, TOKEN));

    let error = sender
        .send(&SmsMessage::new("+447700900103", "hello"))
        .await
        .expect_err("refused");

    assert!(matches!(error, SmsError::Refused(_)), "{error:?}");
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn a_refusal_quoting_the_number_does_not_pass_it_on() {
    let fake = fake().await;
    let sender = TwilioSender::new(config(&fake, TOKEN));
    // Too long for E.164: the fake, like Twilio, answers 21211 quoting the number.
    let message = SmsMessage::new("+4477009001040404", "Your shop code is 141421 #141421");

    let error = sender.send(&message).await.expect_err("refused");

    let SmsError::Refused(detail) = &error else {
        panic!("expected Refused, got {error:?}");
    };
    assert!(detail.contains("21211"), "{detail}");
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("4477009001040404"), "{text}");
        assert!(!text.contains("141421"), "{text}");
    }
    assert_eq!(fake.request_count(), 1);
    assert_not_logged(&["4477009001040404", "#141421"]);
}

#[tokio::test]
async fn two_503s_then_success_is_ok_after_three_requests() {
    let fake = fake().await;
    fake.fail_next(2, 503);
    let sender = TwilioSender::new(config(&fake, TOKEN));
    let message = SmsMessage::new("+447700900104", "Your shop code is 173205 #173205");

    sender
        .send(&message)
        .await
        .expect("sent on the third attempt");

    assert_eq!(fake.request_count(), 3);
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(
        fake.last_code_for("+447700900104").as_deref(),
        Some("173205")
    );
    assert_not_logged(&["447700900104", "#173205"]);
}

#[tokio::test]
async fn a_429_is_retried() {
    let fake = fake().await;
    fake.fail_next(1, 429);
    let sender = TwilioSender::new(config(&fake, TOKEN));

    sender
        .send(&SmsMessage::new("+447700900105", "hello"))
        .await
        .expect("sent on the second attempt");

    assert_eq!(fake.request_count(), 2);
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn a_503_forever_is_unavailable_after_exactly_three_attempts() {
    let fake = fake().await;
    fake.fail_next(100, 503);
    let sender = TwilioSender::new(config(&fake, TOKEN));
    let started = Instant::now();

    let error = sender
        .send(&SmsMessage::new(
            "+447700900106",
            "Your shop code is 161803 #161803",
        ))
        .await
        .expect_err("unavailable");

    assert!(matches!(error, SmsError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("503"), "{error}");
    assert_eq!(fake.request_count(), 3);
    assert!(fake.messages().is_empty());
    // 200 ms then 400 ms of backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    assert_not_logged(&["447700900106", "#161803"]);
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_unavailable() {
    let fake = fake().await;
    fake.set_delay(Duration::from_secs(3));
    let sender = TwilioSender::with_timeouts(
        config(&fake, TOKEN),
        Duration::from_secs(1),
        Duration::from_millis(300),
    );
    let started = Instant::now();

    let error = sender
        .send(&SmsMessage::new("+447700900107", "hello"))
        .await
        .expect_err("unavailable");

    let SmsError::Unavailable(detail) = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(detail.contains("timed out"), "{detail}");
    assert_eq!(fake.request_count(), 3);
    // 3 × 300 ms + 600 ms of backoff, well short of one 3 s answer.
    assert!(
        started.elapsed() < Duration::from_millis(2_800),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_twilio_is_unavailable_after_three_attempts() {
    init_capture();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = TwilioConfig {
        account_sid: SID.to_owned(),
        auth_token: Sensitive::new(TOKEN.to_owned()),
        from: FROM.to_owned(),
        api_base: url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
    };
    let sender = TwilioSender::new(config);
    let started = Instant::now();

    let error = sender
        .send(&SmsMessage::new("+447700900108", "hello"))
        .await
        .expect_err("unavailable");

    let SmsError::Unavailable(detail) = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(detail.contains("connection failed"), "{detail}");
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn debug_output_never_shows_the_token_the_phone_or_the_body() {
    let fake = fake().await;
    let config = config(&fake, TOKEN);
    let sender = TwilioSender::new(config.clone());
    let message = SmsMessage::new("+447700900109", "Your shop code is 112358 #112358");

    for text in [
        format!("{sender:?}"),
        format!("{config:?}"),
        format!("{message:?}"),
        format!("{:?}", message.to),
        format!("{}", message.body),
    ] {
        for secret in [TOKEN, "447700900109", "112358"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    assert!(format!("{sender:?}").contains(SID));
}
