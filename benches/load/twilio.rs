//! A tiny server speaking Twilio's Messages API on 127.0.0.1, so that shopd runs with its real SMS path
//! (`SMS_PROVIDER=twilio`) and the harness can read each signup code: it accepts
//! `POST /2010-04-01/Accounts/{sid}/Messages.json` with basic auth and a form `To`, `From`, `Body`, answers 201
//! as Twilio does, and remembers the last code texted to each number.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000042";
pub const AUTH_TOKEN: &str = "load-harness-twilio-token";
pub const FROM: &str = "+15005550006";

type Codes = Arc<Mutex<HashMap<String, String>>>;

pub struct FakeTwilio {
    /// Like `http://127.0.0.1:PORT`, for `TWILIO_API_BASE`.
    pub base_url: String,
    codes: Codes,
}

impl FakeTwilio {
    /// Starts on a free port, on a thread of its own (one worker: it only sees the seeding traffic).
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let codes: Codes = Arc::default();
        let data = web::Data::new(codes.clone());
        std::thread::Builder::new()
            .name("fake-twilio".into())
            .spawn(move || {
                let result = actix_web::rt::System::new().block_on(async move {
                    HttpServer::new(move || {
                        App::new().app_data(data.clone()).route(
                            "/2010-04-01/Accounts/{sid}/Messages.json",
                            web::post().to(create_message),
                        )
                    })
                    .workers(1)
                    .disable_signals()
                    .listen(listener)?
                    .run()
                    .await
                });
                if let Err(e) = result {
                    eprintln!("the fake Twilio stopped: {e}");
                }
            })?;
        Ok(Self { base_url, codes })
    }

    /// The 6 digits after the last `#` of the newest text to `to` (shopd's SMS autofill layout).
    pub fn code_for(&self, to: &str) -> Option<String> {
        self.codes.lock().unwrap().get(to).cloned()
    }
}

async fn create_message(
    req: HttpRequest,
    sid: web::Path<String>,
    form: web::Bytes,
    codes: web::Data<Codes>,
) -> HttpResponse {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    let authorised = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorised || sid.as_str() != ACCOUNT_SID {
        return HttpResponse::Unauthorized()
            .json(serde_json::json!({"code": 20003, "message": "Authenticate", "status": 401}));
    }
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&form).into_owned().collect();
    let (Some(to), Some(body)) = (fields.get("To"), fields.get("Body")) else {
        return HttpResponse::BadRequest().json(
            serde_json::json!({"code": 21604, "message": "To and Body are required", "status": 400}),
        );
    };
    if let Some(at) = body.rfind('#') {
        let code: String = body[at + 1..].chars().take(6).collect();
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            codes.lock().unwrap().insert(to.clone(), code);
        }
    }
    let message_sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    HttpResponse::Created().json(serde_json::json!({
        "sid": message_sid,
        "account_sid": ACCOUNT_SID,
        "status": "queued",
        "to": to,
        "from": fields.get("From"),
        "api_version": "2010-04-01",
    }))
}
