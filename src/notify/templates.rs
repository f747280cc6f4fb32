//! The e-mail templates of `templates/email/`, built into the binary: for each message a `.txt` (whose
//! first line is `Subject: …`) and an `.html`. A placeholder is `{{name}}`: replaced as is in the subject and
//! the text, HTML-escaped in the HTML. A list value (the items of an order) becomes one `  - item` line each in
//! the text and one `<li>` each in the HTML. An unknown or unfilled placeholder is an error, never a blank.

use chrono::NaiveDateTime;

use super::outbox::Notification;

struct Template {
    name: &'static str,
    text: &'static str,
    html: &'static str,
}

macro_rules! template {
    ($name:literal) => {
        Template {
            name: $name,
            text: include_str!(concat!("../../templates/email/", $name, ".txt")),
            html: include_str!(concat!("../../templates/email/", $name, ".html")),
        }
    };
}

const TEMPLATES: &[Template] = &[
    template!("order_confirmation"),
    template!("order_paid_staff_alert"),
    template!("order_shipped"),
    template!("refunded"),
    template!("session_ended_by_token_reuse"),
    template!("staff_session_ended_by_token_reuse"),
    template!("password_changed"),
    template!("staff_invitation"),
];

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("no template named `{0}`")]
    Unknown(String),
    #[error("template `{0}` does not start with a `Subject:` line")]
    NoSubject(&'static str),
    #[error("template `{template}` has a placeholder `{name}` with no value")]
    Unfilled {
        template: &'static str,
        name: String,
    },
    #[error("template `{0}` has an unterminated placeholder")]
    Unterminated(&'static str),
}

/// A value for a placeholder.
#[derive(Debug, Clone)]
pub enum Value {
    Text(String),
    List(Vec<String>),
}

/// What every message may use besides its own values.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The shop's domain (`SHOP_DOMAIN`), as `{{shop}}`.
    pub shop: &'a str,
    /// When the cause happened (the outbox row's creation), as `{{when}}`.
    pub when: NaiveDateTime,
    /// A staff invitation's link, made by the sender when it sends (as `{{link}}`); `None` for the rest.
    pub link: Option<String>,
}

fn values(notification: &Notification, context: &Context<'_>) -> Vec<(&'static str, Value)> {
    let mut values = vec![
        ("shop", Value::Text(context.shop.to_owned())),
        (
            "when",
            Value::Text(context.when.format("%-d %B %Y at %H:%M UTC").to_string()),
        ),
    ];
    match notification {
        Notification::OrderConfirmation {
            order_id,
            items,
            total,
            ..
        } => {
            values.push(("order_id", Value::Text(order_id.clone())));
            values.push((
                "items",
                Value::List(
                    items
                        .iter()
                        .map(|i| format!("{} × {}", i.quantity, i.name))
                        .collect(),
                ),
            ));
            values.push(("total", Value::Text(total.to_string())));
        }
        Notification::OrderPaidStaffAlert { order_id, total } => {
            values.push(("order_id", Value::Text(order_id.clone())));
            values.push(("total", Value::Text(total.to_string())));
        }
        Notification::OrderShipped { order_id, .. } => {
            values.push(("order_id", Value::Text(order_id.clone())));
        }
        Notification::Refunded {
            order_id, amount, ..
        } => {
            values.push(("order_id", Value::Text(order_id.clone())));
            values.push(("amount", Value::Text(amount.to_string())));
        }
        Notification::StaffSessionEndedByTokenReuse { staff_id } => {
            values.push(("staff_id", Value::Text(staff_id.clone())));
        }
        Notification::StaffInvitation { .. } => {
            values.push((
                "link",
                Value::Text(context.link.clone().unwrap_or_default()),
            ));
        }
        Notification::SessionEndedByTokenReuse { .. } | Notification::PasswordChanged { .. } => {}
    }
    values
}

/// Renders the message of `notification`.
pub fn render(
    notification: &Notification,
    context: &Context<'_>,
) -> Result<Rendered, TemplateError> {
    let name = notification.template();
    let template = TEMPLATES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| TemplateError::Unknown(name.to_owned()))?;
    let values = values(notification, context);
    let (first, body) = template
        .text
        .split_once('\n')
        .unwrap_or((template.text, ""));
    let subject = first
        .strip_prefix("Subject:")
        .ok_or(TemplateError::NoSubject(template.name))?
        .trim();
    let subject = fill(template.name, subject, &values, Mode::Subject)?;
    Ok(Rendered {
        subject,
        text: fill(
            template.name,
            body.trim_start_matches(['\r', '\n']),
            &values,
            Mode::Text,
        )?,
        html: fill(template.name, template.html, &values, Mode::Html)?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Subject,
    Text,
    Html,
}

fn fill(
    template: &'static str,
    source: &str,
    values: &[(&'static str, Value)],
    mode: Mode,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(source.len() + 256);
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or(TemplateError::Unterminated(template))?;
        let name = after[..end].trim();
        let value = values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| TemplateError::Unfilled {
                template,
                name: name.to_owned(),
            })?;
        match (value, mode) {
            (Value::Text(text), Mode::Html) => out.push_str(&escape_html(text)),
            (Value::Text(text), Mode::Text) => out.push_str(text),
            (Value::Text(text), Mode::Subject) => out.push_str(&one_line(text)),
            (Value::List(items), Mode::Html) => {
                let lines: Vec<String> = items
                    .iter()
                    .map(|i| format!("<li>{}</li>", escape_html(i)))
                    .collect();
                out.push_str(&lines.join("\n"));
            }
            (Value::List(items), Mode::Text) => {
                let lines: Vec<String> = items.iter().map(|i| format!("  - {i}")).collect();
                out.push_str(&lines.join("\n"));
            }
            (Value::List(items), Mode::Subject) => out.push_str(&one_line(&items.join(", "))),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A subject is one line: control characters (CR and LF above all) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::{Amount, OrderItem};

    fn context() -> Context<'static> {
        Context {
            shop: "shop.example.com",
            when: chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
                .unwrap()
                .and_hms_opt(9, 5, 0)
                .unwrap(),
            link: Some(
                "https://shop.example.com/staff/invitation/0193f3a4-invitation.c2VjcmV0".into(),
            ),
        }
    }

    fn every_notification() -> Vec<Notification> {
        let c = || "0193f3a4-customer".to_owned();
        let o = || "0193f3a4-order".to_owned();
        vec![
            Notification::OrderConfirmation {
                customer_id: c(),
                order_id: o(),
                items: vec![
                    OrderItem {
                        name: "Mug <b>\"Bold\" & co</b>".into(),
                        quantity: 2,
                    },
                    OrderItem {
                        name: "Tea".into(),
                        quantity: 1,
                    },
                ],
                total: Amount::new(2350, "EUR"),
            },
            Notification::OrderPaidStaffAlert {
                order_id: o(),
                total: Amount::new(2350, "EUR"),
            },
            Notification::OrderShipped {
                customer_id: c(),
                order_id: o(),
            },
            Notification::Refunded {
                customer_id: c(),
                order_id: o(),
                amount: Amount::new(999, "GBP"),
            },
            Notification::SessionEndedByTokenReuse { customer_id: c() },
            Notification::PasswordChanged { customer_id: c() },
            Notification::StaffSessionEndedByTokenReuse {
                staff_id: "0193f3a4-staff".to_owned(),
            },
            Notification::StaffInvitation {
                staff_id: "0193f3a4-staff".to_owned(),
                invitation_id: "0193f3a4-invitation".to_owned(),
            },
        ]
    }

    #[test]
    fn every_template_renders_with_every_placeholder_filled() {
        let notifications = every_notification();
        assert_eq!(notifications.len(), TEMPLATES.len());
        for n in notifications {
            let r = render(&n, &context()).unwrap();
            for part in [&r.subject, &r.text, &r.html] {
                assert!(!part.contains("{{") && !part.contains("}}"), "{part}");
                assert!(!part.contains("0193f3a4-customer"), "no customer id");
            }
            assert!(!r.subject.is_empty() && !r.subject.contains('\n'));
            assert!(r.html.starts_with("<!DOCTYPE html>"));
            assert!(!r.text.starts_with("Subject:"));
        }
    }

    #[test]
    fn values_are_escaped_in_html_only() {
        let n = &every_notification()[0];
        let r = render(n, &context()).unwrap();
        assert_eq!(r.subject, "Your shop.example.com order 0193f3a4-order");
        assert!(
            r.text
                .contains("  - 2 × Mug <b>\"Bold\" & co</b>\n  - 1 × Tea")
        );
        assert!(r.text.contains("Total: 23.50 EUR"));
        assert!(
            r.html
                .contains("<li>2 × Mug &lt;b&gt;&quot;Bold&quot; &amp; co&lt;/b&gt;</li>")
        );
        assert!(!r.html.contains("<b>\"Bold"));
        let r = render(&every_notification()[5], &context()).unwrap();
        assert!(
            r.text.contains("25 November 2026 at 09:05 UTC"),
            "{}",
            r.text
        );
    }

    #[test]
    fn unknown_placeholders_and_broken_ones_are_errors() {
        let values = vec![("a", Value::Text("x".into()))];
        assert_eq!(
            fill("t", "{{a}}-{{ a }}", &values, Mode::Text).unwrap(),
            "x-x"
        );
        assert!(matches!(
            fill("t", "{{b}}", &values, Mode::Text),
            Err(TemplateError::Unfilled { .. })
        ));
        assert_eq!(
            fill("t", "{{a", &values, Mode::Text),
            Err(TemplateError::Unterminated("t"))
        );
        let values = vec![("a", Value::Text("x\r\nBcc: evil@example.com".into()))];
        assert_eq!(
            fill("t", "S {{a}}", &values, Mode::Subject).unwrap(),
            "S x  Bcc: evil@example.com"
        );
        let values = vec![("a", Value::Text("{{a}}".into()))];
        assert_eq!(
            fill("t", "{{a}}", &values, Mode::Text).unwrap(),
            "{{a}}",
            "values are not expanded again"
        );
    }
}
