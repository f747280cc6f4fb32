//! The staff console in a real browser: Debian's Chromium, headless, driven through chromedriver (WebDriver,
//! with `fantoccini`). `.ci/run` installs both and sets `SHOPD_BROWSER_TESTS=required`, so that there a
//! missing browser fails the run; elsewhere these tests say that they did not run and pass.
//! Screenshots of the main pages go to `target/console-screenshots/` (and, with `SHOPD_UPDATE_DOCS=1`, to
//! `docs/staff-console/`, which `docs/staff-console.md` shows).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};

use crate::console::{Console, fresh_code, remember_factor, signed_in};
use crate::helpers::TestApp;
use crate::staff::{STAFF_PASSWORD, add_staff, email_for, paid_order};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium with its own chromedriver; both end with it.
struct Browser {
    client: Client,
    driver: Child,
    base: String,
}

impl Drop for Browser {
    /// Ends chromedriver and every Chromium process it started: they share its process group.
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) of the group this test made; no memory is touched.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A browser on `app`, or `None` (with a line saying so) when this machine has none and none is required.
async fn browser(app: &TestApp) -> Option<Browser> {
    let present =
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists();
    if !present {
        assert!(
            std::env::var("SHOPD_BROWSER_TESTS").as_deref() != Ok("required"),
            "the browser tests are required here: install chromium and chromium-driver"
        );
        eprintln!(
            "browser tests not run: no {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        // A process group of its own, so that ending the test ends the browsers too.
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,900", "--no-first-run"],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::native()
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                return Some(Browser {
                    client,
                    driver,
                    base: app.address.clone(),
                });
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer: {last:?}");
}

impl Browser {
    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn fill(&self, id: &str, text: &str) {
        let field = self.client.find(Locator::Id(id)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, id: &str) {
        self.click_on(Locator::Id(id)).await;
    }

    /// Clicks a button or link and waits for the page it leads to (the old page's root goes stale).
    async fn click_on(&self, what: Locator<'_>) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.client
            .find(what)
            .await
            .unwrap_or_else(|e| panic!("{what:?}: {e}"))
            .click()
            .await
            .unwrap();
        for _ in 0..200 {
            if old.tag_name().await.is_err() {
                self.client
                    .wait()
                    .at_most(Duration::from_secs(10))
                    .for_element(Locator::Css("body"))
                    .await
                    .unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{what:?} led to no new page");
    }

    async fn text(&self, id: &str) -> String {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn has(&self, id: &str) -> bool {
        !self
            .client
            .find_all(Locator::Id(id))
            .await
            .unwrap()
            .is_empty()
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    async fn body(&self) -> String {
        self.client
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Saves a screenshot of the page as `name.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let target = concat!(env!("CARGO_MANIFEST_DIR"), "/target/console-screenshots");
        std::fs::create_dir_all(target).unwrap();
        std::fs::write(format!("{target}/{name}.png"), &png).unwrap();
        if std::env::var_os("SHOPD_UPDATE_DOCS").is_some() {
            let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/staff-console");
            std::fs::create_dir_all(docs).unwrap();
            std::fs::write(format!("{docs}/{name}.png"), &png).unwrap();
        }
    }

    /// Signs a member in who has a factor: the password, then a fresh code.
    async fn sign_in_with_code(&self, email: &str) {
        self.open("/staff/sign-in").await;
        self.fill("email", email).await;
        self.fill("password", STAFF_PASSWORD).await;
        self.click("sign-in").await;
        assert_eq!(self.path().await, "/staff/sign-in/code");
        self.fill("code", &fresh_code(email).await).await;
        self.click("send-code").await;
        assert_eq!(self.path().await, "/staff/orders");
    }
}

#[tokio::test]
async fn a_member_signs_in_enrols_an_authenticator_and_gets_in_only_with_the_right_code() {
    let app = TestApp::spawn().await;
    let Some(b) = browser(&app).await else { return };
    let email = email_for("admin");
    add_staff(&app, &email, "admin");

    b.open("/staff/").await;
    assert_eq!(b.path().await, "/staff/sign-in");
    b.screenshot("sign-in").await;
    b.fill("email", &email).await;
    b.fill("password", "not the password at all").await;
    b.click("sign-in").await;
    assert!(b.text("error").await.contains("wrong"));

    b.fill("email", &email).await;
    b.fill("password", STAFF_PASSWORD).await;
    b.click("sign-in").await;
    assert_eq!(b.path().await, "/staff/enrol");
    let secret = b.text("secret").await;
    remember_factor(&email, &secret);
    b.screenshot("enrol").await;
    b.fill("code", "000000").await;
    b.click("confirm").await;
    assert!(b.text("error").await.contains("wrong"));
    assert_eq!(b.text("secret").await, secret, "the same key");
    b.fill("code", &fresh_code(&email).await).await;
    b.click("confirm").await;
    let codes = b.text("recovery-codes").await;
    assert_eq!(codes.lines().count(), 10, "{codes}");
    b.click("continue").await;
    assert_eq!(b.path().await, "/staff/orders");
    b.screenshot("orders").await;

    // Signed out, then in again: now the code is asked for.
    b.click_sign_out().await;
    b.open("/staff/sign-in").await;
    b.fill("email", &email).await;
    b.fill("password", STAFF_PASSWORD).await;
    b.click("sign-in").await;
    assert_eq!(b.path().await, "/staff/sign-in/code");
    b.fill("code", "123456").await;
    b.click("send-code").await;
    assert!(b.text("error").await.contains("wrong"));
    b.fill("code", &fresh_code(&email).await).await;
    b.click("send-code").await;
    assert_eq!(b.path().await, "/staff/orders");
}

impl Browser {
    async fn click_sign_out(&self) {
        self.click_on(Locator::Css("form.sign-out button")).await;
        assert_eq!(self.path().await, "/staff/sign-in");
    }
}

#[tokio::test]
async fn a_clerk_ships_an_order_end_to_end_and_is_never_offered_a_refund() {
    let app = TestApp::spawn().await;
    let Some(b) = browser(&app).await else { return };
    let email = email_for("clerk");
    add_staff(&app, &email, "clerk");
    // The clerk enrolled earlier (over HTTP, as the console tests do).
    drop(signed_in(&app, &email).await);
    let (customer, _) = app.direct_customer();
    let order = crate::console::paid_order_for(&app, &customer).await;

    b.sign_in_with_code(&email).await;
    b.fill("order", &order).await;
    b.click_on(Locator::Css("input#order + button")).await;
    assert_eq!(b.path().await, format!("/staff/orders/{order}"));
    assert_eq!(b.text("status").await, "paid");
    assert!(!b.has("to-refunded").await && !b.has("to-cancelled").await);
    assert!(!b.body().await.contains("Refund"));
    b.screenshot("order").await;
    b.click("to-fulfilling").await;
    assert_eq!(b.text("status").await, "fulfilling");
    b.fill("carrier", "DHL").await;
    b.fill("tracking_number", "JD014600006281234567").await;
    b.click("ship").await;
    assert_eq!(b.text("status").await, "shipped");
    assert_eq!(b.text("tracking").await, "JD014600006281234567");
    b.click("to-delivered").await;
    assert_eq!(b.text("status").await, "delivered");
    assert!(b.text("timeline").await.contains("delivered by staff"));
    b.screenshot("order-delivered").await;

    let seen: Value = app
        .request(Method::GET, &format!("/v1/orders/{order}"), &customer, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["status"], "delivered");
    assert_eq!(seen["shipment"]["tracking_number"], "JD014600006281234567");
}

/// A page of another origin (another port of the same host: the same site, so the cookie goes along) whose
/// form posts to the console.
async fn forging_page(target: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let html = format!(
        "<!doctype html><form method=post action=\"{target}\"><input type=hidden name=to value=fulfilling>\
         <button id=forge>Win a prize</button></form>"
    );
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    address
}

#[tokio::test]
async fn a_forged_cross_site_post_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let Some(b) = browser(&app).await else { return };
    let email = email_for("clerk");
    add_staff(&app, &email, "clerk");
    drop(signed_in(&app, &email).await);
    let order = paid_order(&app).await;
    b.sign_in_with_code(&email).await;

    let evil = forging_page(&format!("{}/staff/orders/{order}/transition", app.address)).await;
    b.client.goto(&evil).await.unwrap();
    b.click("forge").await;
    let said = b.body().await;
    assert!(
        said.contains("not sent from a page of this console"),
        "{said}"
    );
    b.screenshot("refused").await;
    b.open(&format!("/staff/orders/{order}")).await;
    assert_eq!(b.text("status").await, "paid", "unchanged");
}

#[tokio::test]
async fn a_reveal_is_audited_and_a_hostile_product_name_is_only_text() {
    let app = TestApp::spawn().await;
    let Some(b) = browser(&app).await else { return };
    let email = email_for("admin");
    add_staff(&app, &email, "admin");
    drop(signed_in(&app, &email).await);
    let order = paid_order(&app).await;
    b.sign_in_with_code(&email).await;

    b.open(&format!("/staff/orders/{order}")).await;
    assert!(b.text("address").await.contains("hidden"));
    b.click("reveal").await;
    assert!(b.text("revealed").await.contains("audit log"));
    assert!(!b.text("address").await.contains("hidden"));
    b.open("/staff/audit").await;
    let audit = b.text("audit").await;
    assert!(
        audit.contains("reveal_shipping_address") && audit.contains(&order),
        "{audit}"
    );
    b.screenshot("audit").await;

    let product = app.add_product("Teapot", 1_900, 4);
    b.open(&format!("/staff/products/{product}")).await;
    b.fill("name", "<script>alert(1)</script>").await;
    b.click("save").await;
    assert_eq!(b.path().await, "/staff/products", "{}", b.body().await);
    assert!(b.client.get_alert_text().await.is_err(), "no script ran");
    let names: Vec<String> = {
        let mut names = Vec::new();
        for link in b
            .client
            .find_all(Locator::Css("a.product-name"))
            .await
            .unwrap()
        {
            names.push(link.text().await.unwrap());
        }
        names
    };
    assert!(
        names.contains(&"<script>alert(1)</script>".to_owned()),
        "{names:?}"
    );
    b.screenshot("products").await;
}

#[tokio::test]
async fn a_disabled_members_open_page_signs_them_out_at_the_next_click() {
    let app = TestApp::spawn().await;
    let Some(b) = browser(&app).await else { return };
    let admin_email = email_for("admin");
    add_staff(&app, &admin_email, "admin");
    let mut admin: Console = signed_in(&app, &admin_email).await;
    let email = email_for("clerk");
    add_staff(&app, &email, "clerk");
    drop(signed_in(&app, &email).await);
    b.sign_in_with_code(&email).await;

    let clerk_id = crate::console::member_id(&app, shopd::staff::Role::Clerk).await;
    admin.get("/staff/members").await;
    let disabled = admin
        .post(&format!("/staff/members/{clerk_id}/disable"), &[])
        .await;
    assert_eq!(disabled.status, 303);

    b.click_on(Locator::LinkText("Orders")).await;
    assert_eq!(b.path().await, "/staff/sign-in");
    assert!(b.body().await.contains("You are signed out"));
}

#[tokio::test]
async fn a_manager_imports_a_file_and_a_bad_row_is_named_and_nothing_imported() {
    let app = TestApp::spawn().await;
    let Some(b) = browser(&app).await else { return };
    let email = email_for("manager");
    add_staff(&app, &email, "manager");
    drop(signed_in(&app, &email).await);
    b.sign_in_with_code(&email).await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "name,price,stock,active\nTea,450,3,true\nCup,four,1,true\n",
    )
    .unwrap();
    let good = dir.path().join("good.csv");
    std::fs::write(
        &good,
        "name,price,stock,active\nTea,450,3,true\nCup,300,1,true\n",
    )
    .unwrap();

    b.open("/staff/products").await;
    b.click("import-link").await;
    b.fill_file("file", &bad).await;
    b.click("import").await;
    assert!(b.text("problem").await.contains("1 row(s) need fixing"));
    assert!(b.text("bad-rows").await.contains("`price`"));
    b.screenshot("import-refused").await;
    b.fill_file("file", &good).await;
    b.click("import").await;
    assert_eq!(b.text("imported").await, "Imported 2 product(s).");
    b.open("/staff/products").await;
    assert!(b.body().await.contains("Cup"));
}

impl Browser {
    async fn fill_file(&self, id: &str, path: &std::path::Path) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .send_keys(&path.to_string_lossy())
            .await
            .unwrap();
    }
}
