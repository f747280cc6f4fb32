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
