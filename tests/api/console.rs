//! The staff console over HTTP, as a browser would send its forms: the cookie, the `Origin` header and the
//! page's CSRF token; and the second factor it enrols, which the staff JSON API then asks for. The same
//! flows in a real browser are in `browser.rs`.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shopd::staff::Role;
use shopd::staff::matrix::MATRIX;

use crate::helpers::{TestApp, assert_problem};
use crate::staff::{STAFF_PASSWORD, add_staff, email_for, paid_order};

/// A browser's side of the console: its cookie and the CSRF token of the last page it read.
pub struct Console<'a> {
    app: &'a TestApp,
    pub cookie: Option<String>,
    pub csrf: String,
}

/// A response read whole.
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The text of the element with `id` (up to its first tag end), for the few values a test reads.
    pub fn by_id(&self, id: &str) -> Option<String> {
        let at = self.body.find(&format!("id=\"{id}\""))?;
        let start = at + self.body[at..].find('>')? + 1;
        let end = start + self.body[start..].find('<')?;
        Some(self.body[start..end].trim().to_owned())
    }
}

impl<'a> Console<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookie: None,
            csrf: String::new(),
        }
    }

    async fn read(&mut self, response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            assert!(
                set.contains("HttpOnly")
                    && set.contains("Secure")
                    && set.contains("SameSite=Strict")
                    && set.contains("Path=/"),
                "{set}"
            );
            let value = set.split(';').next().unwrap();
            let (name, value) = value.split_once('=').unwrap();
            assert_eq!(name, "__Host-shopd-console");
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        let location = headers
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        if let Some(at) = body.find("name=\"csrf\" value=\"") {
            let rest = &body[at + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        Page {
            status,
            location,
            headers,
            body,
        }
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(c) => request.header("cookie", format!("__Host-shopd-console={c}")),
            None => request,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let request = self.with_cookie(self.app.client.get(self.app.url(path)));
        let response = request.send().await.unwrap();
        self.read(response).await
    }

    /// A form as the browser sends it from a console page: `Origin`, the cookie, the page's CSRF token.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone();
        form.push(("csrf", &csrf));
        self.post_raw(path, &form, Some(&self.app.address.clone()))
            .await
    }

    pub async fn post_raw(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Page {
        let mut request = self.with_cookie(self.app.client.post(self.app.url(path)).form(form));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        self.read(response).await
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        self.post(
            "/staff/sign-in",
            &[("email", email), ("password", password)],
        )
        .await
    }
}

/// The enrolled factors of this test run's members (their e-mails are unique), and the last step each used.
static FACTORS: LazyLock<Mutex<HashMap<String, (String, u64)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Keeps `email`'s factor, enrolled elsewhere (in the browser), for `fresh_code`.
pub fn remember_factor(email: &str, secret: &str) {
    FACTORS
        .lock()
        .unwrap()
        .insert(email.to_owned(), (secret.to_owned(), 0));
}

fn totp(secret: &str) -> totp_rs::Totp {
    totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .build()
        .unwrap()
}

/// A code of `email`'s factor that the server has not taken yet: the current step or the next, else (three
/// sign-ins within one 30 s step) after waiting for the next step.
pub async fn fresh_code(email: &str) -> String {
    loop {
        let now = chrono::Utc::now().timestamp() as u64;
        let step = now / 30;
        let pick = {
            let mut factors = FACTORS.lock().unwrap();
            let (secret, last) = factors.get_mut(email).expect("an enrolled member");
            let pick = [step, step + 1].into_iter().find(|s| *s > *last);
            if let Some(s) = pick {
                *last = s;
            }
            pick.map(|s| totp(secret).generate(s * 30).to_string())
        };
        if let Some(code) = pick {
            return code;
        }
        tokio::time::sleep(std::time::Duration::from_secs(30 - now % 30)).await;
    }
}

/// Signs `email` in to the console for the first time and enrols their factor: the recovery codes.
pub async fn enrol(console: &mut Console<'_>, email: &str) -> Vec<String> {
    let signed = console.sign_in(email, STAFF_PASSWORD).await;
    assert_eq!(signed.status, 303);
    assert_eq!(signed.location.as_deref(), Some("/staff/enrol"));
    let page = console.get("/staff/enrol").await;
    assert_eq!(page.status, 200);
    let secret = page.by_id("secret").expect("the key is on the page");
    FACTORS
        .lock()
        .unwrap()
        .insert(email.to_owned(), (secret, 0));
    let code = fresh_code(email).await;
    let confirmed = console.post("/staff/enrol", &[("code", &code)]).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let codes: Vec<String> = confirmed
        .body
        .match_indices("<li><code>")
        .map(|(at, _)| confirmed.body[at + 10..at + 29].to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    codes
}

/// The id of the (one) member of `role`.
pub async fn member_id(app: &TestApp, role: Role) -> String {
    app.state
        .staff
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.role == role)
        .expect("a member of this role")
        .id
}

/// A member with a factor, signed in to the console (enrolled on their first sign-in).
pub async fn signed_in<'a>(app: &'a TestApp, email: &str) -> Console<'a> {
    let mut console = Console::new(app);
    if !FACTORS.lock().unwrap().contains_key(email) {
        enrol(&mut console, email).await;
        return console;
    }
    let signed = console.sign_in(email, STAFF_PASSWORD).await;
    assert_eq!(signed.location.as_deref(), Some("/staff/sign-in/code"));
    console.get("/staff/sign-in/code").await;
    let code = fresh_code(email).await;
    let page = console
        .post("/staff/sign-in/code", &[("code", &code)])
        .await;
    assert_eq!(
        page.location.as_deref(),
        Some("/staff/orders"),
        "{}",
        page.body
    );
    console
}

/// The staff JSON API's login of `email`, with their factor's code (enrolled in the console first).
pub async fn staff_login(app: &TestApp, email: &str) -> Value {
    if !FACTORS.lock().unwrap().contains_key(email) {
        enrol(&mut Console::new(app), email).await;
    }
    let code = fresh_code(email).await;
    let response = app
        .post_json(
            "/v1/staff/auth/login",
            &json!({"email": email, "password": STAFF_PASSWORD, "code": code}),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn member<'a>(app: &'a TestApp, role: &str) -> (String, Console<'a>) {
    let email = email_for(role);
    add_staff(app, &email, role);
    let console = signed_in(app, &email).await;
    (email, console)
}

#[tokio::test]
async fn a_first_sign_in_enrols_a_factor_that_the_console_and_the_api_then_ask_for() {
    let app = TestApp::spawn().await;
    let email = email_for("manager");
    add_staff(&app, &email, "manager");
    let mut console = Console::new(&app);

    let wrong = console.sign_in(&email, "not the password at all").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("The e-mail or the password is wrong."));
    let api = app
        .post_json(
            "/v1/staff/auth/login",
            &json!({"email": email, "password": STAFF_PASSWORD}),
        )
        .await;
    assert_problem(api, 403, "second_factor_enrolment_required").await;

    let signed = console.sign_in(&email, STAFF_PASSWORD).await;
    assert_eq!(signed.location.as_deref(), Some("/staff/enrol"));
    let before = console.get("/staff/orders").await;
    assert_eq!(
        before.location.as_deref(),
        Some("/staff/sign-in?signed_out=1"),
        "not signed in before the factor is set up"
    );
    let enrol_page = console.get("/staff/enrol").await;
    assert!(enrol_page.body.contains("<svg"), "the QR code");
    let secret = enrol_page.by_id("secret").unwrap();
    let wrong_code = console.post("/staff/enrol", &[("code", "000000")]).await;
    assert_eq!(wrong_code.status, 401);
    assert_eq!(
        wrong_code.by_id("secret").as_deref(),
        Some(secret.as_str()),
        "the same enrolment"
    );
    FACTORS
        .lock()
        .unwrap()
        .insert(email.clone(), (secret.clone(), 0));
    let code = fresh_code(&email).await;
    let recovery = console.post("/staff/enrol", &[("code", &code)]).await;
    assert_eq!(recovery.status, 200);
    let codes: Vec<&str> = recovery
        .body
        .match_indices("<li><code>")
        .map(|(at, _)| &recovery.body[at + 10..at + 29])
        .collect();
    assert_eq!(codes.len(), 10);
    let replayed = app
        .post_json(
            "/v1/staff/auth/login",
            &json!({"email": email, "password": STAFF_PASSWORD, "code": code}),
        )
        .await;
    assert_problem(replayed, 401, "invalid_second_factor").await;
    assert_eq!(console.get("/staff/orders").await.status, 200);

    let no_code = app
        .post_json(
            "/v1/staff/auth/login",
            &json!({"email": email, "password": STAFF_PASSWORD}),
        )
        .await;
    assert_problem(no_code, 401, "second_factor_required").await;
    let recovery_login = |code: String| {
        let body = json!({"email": email, "password": STAFF_PASSWORD, "code": code});
        let app = &app;
        async move { app.post_json("/v1/staff/auth/login", &body).await }
    };
    let upper = codes[0].to_uppercase();
    assert_eq!(recovery_login(upper).await.status(), 200, "a recovery code");
    assert_problem(
        recovery_login(codes[0].to_owned()).await,
        401,
        "invalid_second_factor",
    )
    .await;
    assert_eq!(
        recovery_login(fresh_code(&email).await).await.status(),
        200,
        "a fresh code"
    );

    // A second browser: the password, then the code.
    let mut other = Console::new(&app);
    let signed = other.sign_in(&email, STAFF_PASSWORD).await;
    assert_eq!(signed.location.as_deref(), Some("/staff/sign-in/code"));
    assert_eq!(other.get("/staff/sign-in/code").await.status, 200);
    let wrong = other
        .post("/staff/sign-in/code", &[("code", "123456")])
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("wrong"));
    let code = fresh_code(&email).await;
    let right = other.post("/staff/sign-in/code", &[("code", &code)]).await;
    assert_eq!(right.location.as_deref(), Some("/staff/orders"));
}

#[tokio::test]
async fn wrong_codes_back_off_like_wrong_passwords() {
    let app = TestApp::spawn().await;
    let email = email_for("admin");
    add_staff(&app, &email, "admin");
    enrol(&mut Console::new(&app), &email).await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let response = app
            .post_json(
                "/v1/staff/auth/login",
                &json!({"email": email, "password": STAFF_PASSWORD, "code": "000000"}),
            )
            .await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..5], &[401; 5]);
    assert_eq!(statuses[6], 429, "{statuses:?}");
    let code = fresh_code(&email).await;
    let right = app
        .post_json(
            "/v1/staff/auth/login",
            &json!({"email": email, "password": STAFF_PASSWORD, "code": code}),
        )
        .await;
    assert_problem(right, 429, "login_throttled").await;
}

#[tokio::test]
async fn a_clerk_ships_an_order_and_the_customer_sees_the_tracking_number() {
    let app = TestApp::spawn().await;
    let (_, mut clerk) = member(&app, "clerk").await;
    let (order, customer_token) = paid_order_of(&app).await;

    let page = clerk.get(&format!("/staff/orders/{order}")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.by_id("status").as_deref(), Some("paid"));
    assert!(
        !page.body.contains("id=\"to-refunded\"") && !page.body.contains("id=\"to-cancelled\""),
        "a clerk is offered no refund"
    );
    let refund = clerk
        .post(
            &format!("/staff/orders/{order}/transition"),
            &[("to", "refunded")],
        )
        .await;
    assert_eq!(refund.status, 403);

    let started = clerk
        .post(
            &format!("/staff/orders/{order}/transition"),
            &[("to", "fulfilling")],
        )
        .await;
    assert_eq!(started.status, 303);
    let no_tracking = clerk
        .post(
            &format!("/staff/orders/{order}/transition"),
            &[
                ("to", "shipped"),
                ("carrier", "DHL"),
                ("tracking_number", ""),
            ],
        )
        .await;
    assert_eq!(no_tracking.status, 422);
    assert!(no_tracking.body.contains("tracking_number"));
    let shipped = clerk
        .post(
            &format!("/staff/orders/{order}/transition"),
            &[
                ("to", "shipped"),
                ("carrier", "DHL"),
                ("tracking_number", "JD014600006281234567"),
            ],
        )
        .await;
    assert_eq!(shipped.status, 303, "{}", shipped.body);
    let page = clerk.get(shipped.location.as_deref().unwrap()).await;
    assert_eq!(page.by_id("status").as_deref(), Some("shipped"));
    assert_eq!(
        page.by_id("tracking").as_deref(),
        Some("JD014600006281234567")
    );

    let seen: Value = app
        .request(
            Method::GET,
            &format!("/v1/orders/{order}"),
            &customer_token,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["status"], "shipped");
    assert_eq!(
        seen["shipment"],
        json!({"carrier": "DHL", "tracking_number": "JD014600006281234567"})
    );
    let delivered = clerk
        .post(
            &format!("/staff/orders/{order}/transition"),
            &[("to", "delivered")],
        )
        .await;
    assert_eq!(delivered.status, 303);
    let page = clerk.get(&format!("/staff/orders/{order}")).await;
    assert_eq!(page.by_id("status").as_deref(), Some("delivered"));
    assert!(
        page.body.contains("by staff"),
        "the timeline names who did it"
    );
}

/// An order paid by a fresh customer: its id and the customer's access token.
async fn paid_order_of(app: &TestApp) -> (String, String) {
    let (token, _) = app.direct_customer();
    let order = paid_order_for(app, &token).await;
    (order, token)
}

pub async fn paid_order_for(app: &TestApp, token: &str) -> String {
    let product = app.add_product("Kettle", 2_500, 10);
    let response = app
        .place_order(
            token,
            Some(&crate::helpers::new_key()),
            &crate::helpers::order_body(&[(&product, 1)]),
        )
        .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    shopd::orders::state::transition(
        &mut app.conn(),
        &id,
        shopd::orders::OrderStatus::Paid,
        &shopd::orders::state::Actor::Provider("test".into()),
        None,
    )
    .unwrap();
    id
}

#[tokio::test]
async fn a_form_from_elsewhere_or_without_its_token_changes_nothing() {
    let app = TestApp::spawn().await;
    let (_, mut clerk) = member(&app, "clerk").await;
    let order = paid_order(&app).await;
    clerk.get(&format!("/staff/orders/{order}")).await;
    let path = format!("/staff/orders/{order}/transition");
    let token = clerk.csrf.clone();
    let forged = clerk
        .post_raw(
            &path,
            &[("to", "fulfilling"), ("csrf", &token)],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(forged.body.contains("not sent from a page of this console"));
    let no_origin = clerk
        .post_raw(&path, &[("to", "fulfilling"), ("csrf", &token)], None)
        .await;
    assert_eq!(no_origin.status, 403);
    let origin = app.address.clone();
    let no_token = clerk
        .post_raw(&path, &[("to", "fulfilling")], Some(&origin))
        .await;
    assert_eq!(no_token.status, 403);
    assert!(no_token.body.contains("security token"));
    let foreign_token = clerk
        .post_raw(
            &path,
            &[("to", "fulfilling"), ("csrf", "bm90IHRoaXMgc2Vzc2lvbidz")],
            Some(&origin),
        )
        .await;
    assert_eq!(foreign_token.status, 403);
    let page = clerk.get(&format!("/staff/orders/{order}")).await;
    assert_eq!(page.by_id("status").as_deref(), Some("paid"), "unchanged");
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn every_page_has_the_strict_headers_and_escapes_what_staff_typed() {
    let app = TestApp::spawn().await;
    let (_, mut manager) = member(&app, "manager").await;
    let product = app.add_product("Mug", 900, 3);
    let page = manager.get(&format!("/staff/products/{product}")).await;
    assert_eq!(page.status, 200);
    let saved = manager
        .post(
            &format!("/staff/products/{product}"),
            &[
                ("name", "<script>alert(1)</script>"),
                ("price", "9.50"),
                ("stock", "3"),
                ("active", "on"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let list = manager.get("/staff/products").await;
    assert!(!list.body.contains("<script>alert(1)</script>"));
    assert!(
        list.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || list.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        list.body
    );
    assert!(list.body.contains("9.50 EUR"));
    let headers = &list.headers;
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let css = manager.get("/staff/console.css").await;
    assert_eq!(css.status, 200);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(
        css.headers["cache-control"], "public, max-age=3600",
        "the one cached file"
    );
    assert!(css.body.contains("@media"), "responsive");
    let bad_price = manager
        .post(
            &format!("/staff/products/{product}"),
            &[("name", "Mug"), ("price", "nine"), ("stock", "3")],
        )
        .await;
    assert_eq!(bad_price.status, 422);
    assert!(bad_price.body.contains("The price is a number"));
    let stored: Value = app
        .get(&format!("/v1/products/{product}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        stored["price"]["amount"], 950,
        "the bad form changed nothing"
    );
}

#[tokio::test]
async fn a_reveal_says_it_is_audited_and_is() {
    let app = TestApp::spawn().await;
    let (admin_email, mut admin) = member(&app, "admin").await;
    let order = paid_order(&app).await;
    let hidden = admin.get(&format!("/staff/orders/{order}")).await;
    assert!(hidden.body.contains("hidden until revealed"));
    let revealed = admin
        .post(&format!("/staff/orders/{order}/reveal"), &[])
        .await;
    assert_eq!(revealed.status, 200);
    assert!(revealed.body.contains("<address id=\"address\">"));
    assert!(revealed.body.contains("recorded in the audit log"));
    let audit = admin
        .get("/staff/audit?action=reveal_shipping_address")
        .await;
    assert!(audit.body.contains(&order), "{}", audit.body);
    let token = staff_login(&app, &admin_email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let log: Value = app
        .request(Method::GET, "/v1/staff/audit-log", &token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log[0]["action"], "reveal_shipping_address");
    assert_eq!(log[0]["target_id"], order.as_str());
}

#[tokio::test]
async fn a_disabled_members_open_page_is_signed_out_at_the_next_click() {
    let app = TestApp::spawn().await;
    let (_, mut admin) = member(&app, "admin").await;
    let (clerk_email, mut clerk) = member(&app, "clerk").await;
    assert_eq!(clerk.get("/staff/orders").await.status, 200);
    assert_eq!(admin.get("/staff/members").await.status, 200);
    let clerk_id = member_id(&app, Role::Clerk).await;
    let disabled = admin
        .post(&format!("/staff/members/{clerk_id}/disable"), &[])
        .await;
    assert_eq!(disabled.status, 303);
    let next = clerk.get("/staff/orders").await;
    assert_eq!(next.status, 303);
    assert_eq!(
        next.location.as_deref(),
        Some("/staff/sign-in?signed_out=1")
    );
    let again = Console::new(&app)
        .sign_in(&clerk_email, STAFF_PASSWORD)
        .await;
    assert_eq!(again.status, 401, "a disabled member cannot sign in");
}

#[tokio::test]
async fn an_admin_resets_a_factor_and_the_member_enrols_again() {
    let app = TestApp::spawn().await;
    let (_, mut admin) = member(&app, "admin").await;
    let (manager_email, mut manager) = member(&app, "manager").await;
    let manager_id = member_id(&app, Role::Manager).await;
    let reset = admin
        .post(&format!("/staff/members/{manager_id}/reset-factor"), &[])
        .await;
    assert_eq!(reset.status, 303);
    assert_eq!(manager.get("/staff/orders").await.status, 303, "signed out");
    FACTORS.lock().unwrap().remove(&manager_email);
    enrol(&mut Console::new(&app), &manager_email).await;
    let audit = admin.get("/staff/audit?action=staff_factor_reset").await;
    assert!(audit.body.contains(&manager_id));
}

/// Every console route of the matrix, signed out and as each role: signed out goes to the sign-in page, a
/// role below the route's least is refused, and one at or above it is let through.
#[tokio::test]
async fn the_security_matrix_holds_for_every_console_route_and_role() {
    let app = TestApp::spawn().await;
    let mut consoles = Vec::new();
    for role in ["clerk", "manager", "admin"] {
        let (_, console) = member(&app, role).await;
        consoles.push((Role::parse(role).unwrap(), console));
    }
    let order = paid_order(&app).await;
    let mut anonymous = Console::new(&app);
    anonymous.get("/staff/sign-in").await;
    // Signing out last: it ends the session the other rules use.
    let mut rules: Vec<_> = MATRIX
        .iter()
        .filter(|r| r.path.starts_with("/staff/"))
        .collect();
    rules.sort_by_key(|r| r.path == "/staff/sign-out");
    for rule in rules {
        let path = rule.path.replace("{id}", &order).replace("{token}", &order);
        let method = rule.method;
        let Some(least) = rule.least else {
            let page = match method {
                "GET" => anonymous.get(&path).await,
                _ => anonymous.post(&path, &[]).await,
            };
            // An invitation's page without a real link is the invitation's own 404.
            let not_found_is_fine = rule.path.contains("{token}");
            assert!(
                page.status != 403
                    && (page.status != 404 || not_found_is_fine)
                    && page.status.as_u16() < 500,
                "{method} {path} signed out: {}",
                page.status
            );
            continue;
        };
        let page = match method {
            "GET" => anonymous.get(&path).await,
            _ => anonymous.post(&path, &[]).await,
        };
        assert_eq!(
            page.location.as_deref(),
            Some("/staff/sign-in?signed_out=1"),
            "{method} {path} signed out"
        );
        for (role, console) in consoles.iter_mut() {
            console.get("/staff/orders").await;
            let page = match method {
                "GET" => console.get(&path).await,
                // The forms' fields are left out: a let-through request is refused by the handler (422,
                // 409, 404), never by the guard.
                _ => console.post(&path, &[]).await,
            };
            let status = page.status.as_u16();
            if *role >= least {
                assert!(
                    status != 401
                        && status != 403
                        && page.location.as_deref() != Some("/staff/sign-in?signed_out=1")
                        && status < 500,
                    "{role} on {method} {path}: {status} {}",
                    page.body
                );
            } else {
                assert_eq!(status, 403, "{role} on {method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn the_operations_page_shows_webhook_outcomes_and_the_security_counters() {
    let app = TestApp::spawn().await;
    let (_, mut admin) = member(&app, "admin").await;
    let before = admin.get("/staff/operations").await;
    assert!(before.body.contains("No webhook arrived."));
    let forged = app
        .client
        .post(app.url("/v1/webhooks/standard"))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_forged")
        .header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl")
        .body(r#"{"type":"payment.succeeded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let page = admin.get("/staff/operations").await;
    assert_eq!(page.status, 200);
    let counters = &page.body[page.body.find("id=\"counters\"").unwrap()..];
    let row = counters
        .split("<tr>")
        .find(|r| r.contains("webhook_signature_failures_total") && r.contains("provider=standard"))
        .expect("the counter is shown");
    assert!(row.contains("<td>1</td>"), "{row}");
    let webhooks = &page.body[page.body.find("id=\"webhooks\"").unwrap()..];
    assert!(
        !webhooks.contains("No webhook arrived."),
        "the forged receipt is listed"
    );
    assert!(page.body.contains("None: every message went out."));
}

/// A `multipart/form-data` body with one file field, as a browser sends an upload.
fn upload(name: &str, content: &str) -> (String, String) {
    let boundary = "----shopdtestboundary7MA4YWxk";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{content}\r\n--{boundary}--\r\n"
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn a_manager_imports_products_all_or_nothing_with_each_bad_row_named() {
    let app = TestApp::spawn().await;
    let (_, mut manager) = member(&app, "manager").await;
    let form = manager.get("/staff/products/import").await;
    assert_eq!(form.status, 200);
    let csrf = manager.csrf.clone();
    let send = |name: &str, content: &str, csrf: &str| {
        let (content_type, body) = upload(name, content);
        app.client
            .post(app.url(&format!("/staff/products/import?csrf={csrf}")))
            .header("content-type", content_type)
            .header("origin", &app.address)
            .header(
                "cookie",
                format!("__Host-shopd-console={}", manager.cookie.clone().unwrap()),
            )
            .body(body)
            .send()
    };
    let count = |app: &TestApp| {
        use diesel::prelude::*;
        shopd::db::schema::products::table
            .count()
            .get_result::<i64>(&mut app.conn())
            .unwrap()
    };
    let bad = send(
        "products.csv",
        "name,price,stock,active\nTea,450,3,true\nCup,four,1,true\nPot,1,1\n",
        &csrf,
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 422);
    let page = bad.text().await.unwrap();
    assert!(page.contains("2 row(s) need fixing"), "{page}");
    assert!(page.contains("<td>3</td><td>`price`"), "{page}");
    assert!(page.contains("<td>4</td><td>3 fields"), "{page}");
    assert_eq!(count(&app), 0, "nothing imported");

    let not_json = send("products.json", "{\"name\": 1}", &csrf).await.unwrap();
    assert_eq!(not_json.status(), 422);
    assert!(not_json.text().await.unwrap().contains("not a JSON array"));
    let forged = send(
        "products.csv",
        "name,price,stock,active\nTea,450,3,true\n",
        "x",
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), 403, "the upload needs the token too");
    assert_eq!(count(&app), 0);

    let good = send(
        "products.json",
        r#"[{"name": "Tea", "price": 450, "stock": 3}, {"name": "Jug", "price": 900, "stock": 0, "active": false}]"#,
        &csrf,
    )
    .await
    .unwrap();
    assert_eq!(good.status(), 200);
    assert!(
        good.text()
            .await
            .unwrap()
            .contains("Imported 2 product(s).")
    );
    assert_eq!(count(&app), 2);
    let list = manager.get("/staff/products").await;
    assert!(list.body.contains("Tea") && list.body.contains("Jug"));
}

#[tokio::test]
async fn an_invited_member_sets_a_password_by_the_emailed_link_once_then_enrols() {
    let smtp = crate::fake_smtp::FakeSmtp::start().await;
    let app = crate::email::mailing_app(&smtp, |_| {}).await;
    let (_, mut admin) = member(&app, "admin").await;
    admin.get("/staff/members").await;
    let email = email_for("invited");
    let invited = admin
        .post("/staff/members", &[("email", &email), ("role", "clerk")])
        .await;
    assert_eq!(invited.status, 303);
    assert_eq!(
        invited.location.as_deref(),
        Some("/staff/members?done=invited")
    );
    let again = admin
        .post("/staff/members", &[("email", &email), ("role", "clerk")])
        .await;
    assert_eq!(again.status, 409, "one account per e-mail");

    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.to, vec![email.clone()]);
    let mail = mail.parse();
    let link = mail
        .text
        .split_whitespace()
        .find(|w| w.contains("/staff/invitation/"))
        .expect("the link is in the e-mail")
        .to_owned();
    let path = &link[link.find("/staff/").unwrap()..];
    assert!(link.starts_with(&app.address), "{link}");
    let stored: String = {
        use diesel::prelude::*;
        shopd::db::schema::outbox::table
            .select(shopd::db::schema::outbox::data)
            .first(&mut app.conn())
            .unwrap()
    };
    let secret = path.rsplit('.').next().unwrap();
    assert!(
        !stored.contains(secret),
        "the outbox holds no secret of the link"
    );

    let before = Console::new(&app).sign_in(&email, "").await;
    assert_eq!(before.status, 401, "no password opens an invited account");
    let mut invitee = Console::new(&app);
    let forged = invitee.get(&format!("{}x", &path[..path.len() - 1])).await;
    assert_eq!(forged.status, 404);
    assert_eq!(invitee.get(path).await.status, 200);
    let weak = invitee
        .post(path, &[("password", "password"), ("again", "password")])
        .await;
    assert_eq!(weak.status, 422);
    let differ = invitee
        .post(
            path,
            &[
                ("password", STAFF_PASSWORD),
                ("again", "something else entirely"),
            ],
        )
        .await;
    assert_eq!(differ.status, 422);
    let set = invitee
        .post(
            path,
            &[("password", STAFF_PASSWORD), ("again", STAFF_PASSWORD)],
        )
        .await;
    assert_eq!(
        set.location.as_deref(),
        Some("/staff/sign-in?welcome=1"),
        "{}",
        set.body
    );
    let spent = invitee
        .post(
            path,
            &[("password", STAFF_PASSWORD), ("again", STAFF_PASSWORD)],
        )
        .await;
    assert_eq!(spent.status, 404, "the link works once");
    enrol(&mut Console::new(&app), &email).await;
    let audit = admin.get("/staff/audit?action=staff_invited").await;
    assert!(audit.body.contains("staff_invited"));
}

#[tokio::test]
async fn the_queue_filters_by_status_flag_and_date_counts_each_status_and_pages_newest_first() {
    let app = TestApp::spawn().await;
    let (_, mut clerk) = member(&app, "clerk").await;
    let (_, mut manager) = member(&app, "manager").await;
    let phone = crate::helpers::unique_phone();
    let customer = app.register(&phone).await;
    let token = customer["access_token"].as_str().unwrap().to_owned();
    let mut paid = Vec::new();
    for _ in 0..52 {
        paid.push(paid_order_for(&app, &token).await);
    }
    let (other, _) = paid_order_of(&app).await;
    shopd::orders::state::set_flag(
        &mut app.conn(),
        &paid[3],
        shopd::orders::OrderFlag::PaymentReview,
        true,
    )
    .unwrap();

    let all = clerk.get("/staff/orders").await;
    assert_eq!(all.status, 200);
    assert!(
        all.body.contains("paid <span class=\"count\">53</span>"),
        "counts per status"
    );
    let first = all.body.find(&other).expect("the newest first");
    assert!(first < all.body.find(&paid[51]).unwrap());
    assert!(!all.body.contains(&paid[0]), "50 a page");
    let older = all.body[all.body.find("rel=\"next\" href=\"").unwrap() + 17..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let page_two = clerk.get(&older).await;
    // 53 orders: the newest 50, then these three, and no further page.
    assert!(
        paid[..3]
            .iter()
            .all(|id| page_two.body.contains(id.as_str()))
    );
    assert!(!page_two.body.contains(&paid[3]) && !page_two.body.contains("rel=\"next\""));

    let flagged = clerk.get("/staff/orders?flag=payment_review").await;
    assert!(flagged.body.contains(&paid[3]) && !flagged.body.contains(&paid[4]));
    let shipped = clerk.get("/staff/orders?status=shipped").await;
    assert!(shipped.body.contains("No orders match."));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let dated = clerk
        .get(&format!("/staff/orders?since={today}&until={today}"))
        .await;
    assert!(dated.body.contains(&other));
    let past = clerk.get("/staff/orders?until=2020-01-01").await;
    assert!(past.body.contains("No orders match."));
    let bad_date = clerk.get("/staff/orders?since=yesterday").await;
    assert_eq!(bad_date.status, 200);
    assert!(bad_date.body.contains("is a date like"));

    let by_id = clerk.get(&format!("/staff/orders?order={other}")).await;
    assert_eq!(
        by_id.location.as_deref(),
        Some(format!("/staff/orders/{other}").as_str())
    );
    assert!(
        !all.body.contains("id=\"phone\""),
        "no phone search for a clerk"
    );
    let clerk_phone = clerk
        .get(&format!("/staff/orders?phone={}", urlencode(&phone)))
        .await;
    assert_eq!(clerk_phone.status, 403);
    let by_phone = manager
        .get(&format!("/staff/orders?phone={}", urlencode(&phone)))
        .await;
    assert!(by_phone.body.contains(&paid[51]) && !by_phone.body.contains(&other));
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn an_incomplete_form_gets_a_page_that_says_so_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (_, mut clerk) = member(&app, "clerk").await;
    let order = paid_order(&app).await;
    clerk.get(&format!("/staff/orders/{order}")).await;
    let page = clerk
        .post(&format!("/staff/orders/{order}/transition"), &[])
        .await;
    assert_eq!(page.status, 400);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.body.contains("nothing was changed"));
    let unknown = clerk
        .post(
            &format!("/staff/orders/{order}/transition"),
            &[("to", "teleported")],
        )
        .await;
    assert_eq!(unknown.status, 422);
    let missing = clerk.get("/staff/orders/no-such-order").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("There is no such record."));
    let page = clerk.get(&format!("/staff/orders/{order}")).await;
    assert_eq!(page.by_id("status").as_deref(), Some("paid"));
}

#[tokio::test]
async fn an_admin_reveals_and_erases_a_customer_and_changes_a_role_each_audited() {
    let app = TestApp::spawn().await;
    let (_, mut admin) = member(&app, "admin").await;
    let (clerk_email, mut clerk) = member(&app, "clerk").await;
    let clerk_token = staff_login(&app, &clerk_email).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let phone = crate::helpers::unique_phone();
    let customer = app.register(&phone).await;
    let customer_id = customer["customer_id"].as_str().unwrap().to_owned();

    let found = admin
        .get(&format!("/staff/customers?id={customer_id}"))
        .await;
    assert!(found.body.contains("hidden until revealed") && !found.body.contains(&phone));
    let revealed = admin
        .post(&format!("/staff/customers/{customer_id}/reveal"), &[])
        .await;
    assert_eq!(revealed.status, 200);
    assert!(revealed.body.contains(&phone), "the contact, opened");
    assert!(revealed.body.contains("recorded in the audit log"));
    let unconfirmed = admin
        .post(
            &format!("/staff/customers/{customer_id}/erase"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(unconfirmed.status, 422);
    assert!(unconfirmed.body.contains("nothing was erased"));
    let erased = admin
        .post(
            &format!("/staff/customers/{customer_id}/erase"),
            &[("confirm", &customer_id)],
        )
        .await;
    assert_eq!(
        erased.location.as_deref(),
        Some("/staff/customers?done=erased")
    );
    let after = admin
        .post(&format!("/staff/customers/{customer_id}/reveal"), &[])
        .await;
    assert!(!after.body.contains(&phone), "erased: {}", after.status);

    let clerk_id = member_id(&app, Role::Clerk).await;
    assert_eq!(clerk.get("/staff/products").await.status, 403);
    admin.get("/staff/members").await;
    let promoted = admin
        .post(
            &format!("/staff/members/{clerk_id}/role"),
            &[("role", "manager")],
        )
        .await;
    assert_eq!(promoted.status, 303);
    // Their sessions end (a token names the role it was issued with): the new role counts from the next
    // sign-in, on the console and on the API.
    assert_eq!(
        clerk.get("/staff/products").await.location.as_deref(),
        Some("/staff/sign-in?signed_out=1")
    );
    assert_problem(
        app.request(Method::GET, "/v1/staff/orders", &clerk_token, None)
            .await,
        401,
        "session_ended",
    )
    .await;
    let mut promoted = signed_in(&app, &clerk_email).await;
    assert_eq!(promoted.get("/staff/products").await.status, 200);

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let audit = admin
        .get(&format!("/staff/audit?since={today}&until={today}"))
        .await;
    for action in [
        "reveal_customer_contact",
        "erase_customer",
        "staff_role_changed",
    ] {
        assert!(audit.body.contains(action), "{action}");
    }
    assert!(!audit.body.contains(&phone), "nothing personal in the log");
    let old = admin.get("/staff/audit?until=2020-01-01").await;
    assert!(old.body.contains("Nothing recorded."));
    let by_member = admin
        .get(&format!("/staff/audit?staff_id={clerk_id}"))
        .await;
    assert!(
        by_member.body.contains("Nothing recorded."),
        "the clerk did nothing audited"
    );
}

/// A console session is a staff session: an hour without a click ends it, as 12 hours in all do.
#[tokio::test]
async fn an_hour_idle_or_twelve_in_all_signs_the_console_out() {
    use diesel::prelude::*;
    use shopd::db::schema::sessions;
    let app = TestApp::spawn().await;
    let (_, mut clerk) = member(&app, "clerk").await;
    assert_eq!(clerk.get("/staff/orders").await.status, 200);
    let now = chrono::Utc::now().naive_utc();
    diesel::update(sessions::table)
        .set(sessions::last_used_at.eq(now - chrono::Duration::minutes(59)))
        .execute(&mut app.conn())
        .unwrap();
    assert_eq!(
        clerk.get("/staff/orders").await.status,
        200,
        "59 minutes idle"
    );
    diesel::update(sessions::table)
        .set(sessions::last_used_at.eq(now - chrono::Duration::minutes(61)))
        .execute(&mut app.conn())
        .unwrap();
    let idle = clerk.get("/staff/orders").await;
    assert_eq!(
        idle.location.as_deref(),
        Some("/staff/sign-in?signed_out=1")
    );

    let (_, mut manager) = member(&app, "manager").await;
    diesel::update(sessions::table)
        .set(sessions::expires_at.eq(now - chrono::Duration::seconds(1)))
        .execute(&mut app.conn())
        .unwrap();
    let old = manager.get("/staff/orders").await;
    assert_eq!(old.location.as_deref(), Some("/staff/sign-in?signed_out=1"));
}
