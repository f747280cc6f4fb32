//! The security matrix: every staff route and the least role that may call it, in one table. The route guard
//! (`api::staff::guard`) is built from it, a test walks it with every role, and `docs/security-matrix.md` is
//! checked against `markdown()`. A staff route missing from the table is refused: deny by default.

use super::Role;

#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    /// `None`: no token needed (login and refresh).
    pub least: Option<Role>,
    pub what: &'static str,
}

const fn rule(
    method: &'static str,
    path: &'static str,
    least: Option<Role>,
    what: &'static str,
) -> Rule {
    Rule {
        method,
        path,
        least,
        what,
    }
}

use Role::{Admin, Clerk, Manager};

#[rustfmt::skip]
pub const MATRIX: &[Rule] = &[
    rule("POST", "/v1/staff/auth/login", None, "log in"),
    rule("POST", "/v1/staff/auth/refresh", None, "refresh a token pair"),
    rule("POST", "/v1/staff/auth/logout", Some(Clerk), "log out"),
    rule("GET", "/v1/staff/orders", Some(Clerk), "list orders (no personal data); `flag=` only the flagged; `customer_phone=` needs manager"),
    rule("GET", "/v1/staff/orders/{id}", Some(Clerk), "an order's detail and status history"),
    rule("POST", "/v1/staff/orders/{id}/transitions", Some(Clerk), "fulfilling, shipped, delivered; cancelled and refunded need manager"),
    rule("GET", "/v1/staff/orders/{id}/shipping-address", Some(Clerk), "reveal an order's shipping address (audited)"),
    rule("POST", "/v1/staff/orders/{id}/clear-flag", Some(Manager), "clear an order's `payment_review` or `needs_refund` once handled (audited)"),
    rule("POST", "/v1/staff/products", Some(Manager), "create a product"),
    rule("PATCH", "/v1/staff/products/{id}", Some(Manager), "change a product's name, price, stock or active (audited)"),
    rule("GET", "/v1/staff/audit-log", Some(Admin), "read the audit log"),
    rule("GET", "/v1/staff/customers/{id}/contact", Some(Admin), "reveal a customer's contact (audited)"),
    rule("POST", "/v1/staff/customers/{id}/erase", Some(Admin), "erase a customer on request (audited)"),
    // The console (`/staff/`): pages and forms, signed in by cookie.
    rule("GET", "/staff/", None, "the console: on to the orders, or to sign in"),
    rule("GET", "/staff/console.css", None, "the console's stylesheet"),
    rule("GET", "/staff/sign-in", None, "the sign-in page"),
    rule("POST", "/staff/sign-in", None, "sign in: e-mail and password"),
    rule("GET", "/staff/sign-in/code", None, "the second-factor page (after the password)"),
    rule("POST", "/staff/sign-in/code", None, "the authenticator or recovery code (after the password)"),
    rule("GET", "/staff/enrol", None, "set up an authenticator app (after the password, without a factor)"),
    rule("POST", "/staff/enrol", None, "its first code: the factor counts, recovery codes shown once"),
    rule("GET", "/staff/invitation/{token}", None, "an invitation's page: set a password (the link of the e-mail)"),
    rule("POST", "/staff/invitation/{token}", None, "set the password; the link is spent"),
    rule("POST", "/staff/sign-out", Some(Clerk), "sign out (the session ends)"),
    rule("GET", "/staff/orders", Some(Clerk), "the orders queue; the phone search needs manager"),
    rule("GET", "/staff/orders/{id}", Some(Clerk), "an order: lines, payment, webhooks, timeline, actions"),
    rule("POST", "/staff/orders/{id}/transition", Some(Clerk), "fulfil, ship (carrier, tracking), deliver; cancel and refund need manager"),
    rule("POST", "/staff/orders/{id}/reveal", Some(Clerk), "reveal the shipping address (audited)"),
    rule("POST", "/staff/orders/{id}/clear-flag", Some(Manager), "clear a flag once handled (audited)"),
    rule("GET", "/staff/products", Some(Manager), "the products"),
    rule("GET", "/staff/products/import", Some(Manager), "the import form"),
    rule("POST", "/staff/products/import", Some(Manager), "import a CSV or JSON file of products, all or nothing (audited)"),
    rule("GET", "/staff/products/{id}", Some(Manager), "a product's form"),
    rule("POST", "/staff/products/{id}", Some(Manager), "save a product (audited)"),
    rule("GET", "/staff/customers", Some(Admin), "find a customer by id"),
    rule("POST", "/staff/customers/{id}/reveal", Some(Admin), "reveal a customer's contact (audited)"),
    rule("POST", "/staff/customers/{id}/erase", Some(Admin), "erase a customer, confirmed by their id (audited)"),
    rule("GET", "/staff/members", Some(Admin), "the staff members"),
    rule("POST", "/staff/members", Some(Admin), "invite a member: the e-mail with a one-time link to set a password (audited)"),
    rule("POST", "/staff/members/{id}/role", Some(Admin), "change a member's role; their sessions end (audited)"),
    rule("POST", "/staff/members/{id}/disable", Some(Admin), "disable a member; their sessions end (audited)"),
    rule("POST", "/staff/members/{id}/reset-factor", Some(Admin), "reset a member's second factor (audited)"),
    rule("GET", "/staff/audit", Some(Admin), "the audit log, by person and action"),
    rule("GET", "/staff/operations", Some(Admin), "failing e-mail, webhook outcomes, the security counters of `/metrics`"),
];

/// The rule of a request, by method and matched route pattern.
pub fn rule_for(method: &str, pattern: &str) -> Option<&'static Rule> {
    MATRIX
        .iter()
        .find(|r| r.method == method && r.path == pattern)
}

/// Whether any rule names this path (with another method): then a wrong method is a 405, not a refusal.
pub fn knows_path(pattern: &str) -> bool {
    MATRIX.iter().any(|r| r.path == pattern)
}

/// The matrix as the Markdown table of `docs/security-matrix.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Staff security matrix\n\n\
         Generated from `src/staff/matrix.rs` (a test checks this file against it). Roles nest: \
         admin ⊇ manager ⊇ clerk. A customer token on any of these routes is a 401; a staff route missing from \
         the table is refused.\n\n\
         | method | route | least role | what |\n|---|---|---|---|\n",
    );
    for r in MATRIX {
        let least = r.least.map_or("none (no token)", Role::as_str);
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            r.method, r.path, least, r.what
        ));
    }
    out
}
