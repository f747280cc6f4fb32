//! A shipping address, validated: `{name, line1, line2?, city, postal_code, country}`. Every field is personal:
//! Debug prints `[redacted]`, and the whole address is sealed as one value (`to_sealable`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::country::country_code;

/// The longest accepted field, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}

impl fmt::Debug for ShippingAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShippingAddress([redacted])")
    }
}

/// Which field is wrong and why; the message never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {reason}")]
pub struct InvalidAddress {
    pub field: &'static str,
    pub reason: &'static str,
}

fn text(field: &'static str, value: String) -> Result<String, InvalidAddress> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(InvalidAddress {
            field,
            reason: "is empty",
        });
    }
    if trimmed.chars().count() > MAX_FIELD_CHARS {
        return Err(InvalidAddress {
            field,
            reason: "is longer than 200 characters",
        });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(InvalidAddress {
            field,
            reason: "holds a control character",
        });
    }
    Ok(trimmed.to_owned())
}

impl ShippingAddress {
    /// Validates and normalises (surrounding spaces trimmed, an empty `line2` dropped, the country upper-cased).
    pub fn parse(
        name: String,
        line1: String,
        line2: Option<String>,
        city: String,
        postal_code: String,
        country: String,
    ) -> Result<Self, InvalidAddress> {
        let line2 = match line2 {
            Some(l) if !l.trim().is_empty() => Some(text("line2", l)?),
            _ => None,
        };
        Ok(Self {
            name: text("name", name)?,
            line1: text("line1", line1)?,
            line2,
            city: text("city", city)?,
            postal_code: text("postal_code", postal_code)?,
            country: country_code(&country)
                .ok_or(InvalidAddress {
                    field: "country",
                    reason: "is not an ISO 3166-1 alpha-2 code like GB",
                })?
                .to_owned(),
        })
    }

    /// The form that is sealed: compact JSON.
    pub fn to_sealable(&self) -> String {
        serde_json::to_string(self).expect("an address serialises")
    }

    pub fn from_sealed(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, country: &str) -> Result<ShippingAddress, InvalidAddress> {
        ShippingAddress::parse(
            name.into(),
            "1 High St".into(),
            Some("  ".into()),
            "Leeds".into(),
            "LS1 1AA".into(),
            country.into(),
        )
    }

    #[test]
    fn valid_and_normalised() {
        let a = parse("  Ada Lovelace ", "gb").unwrap();
        assert_eq!(a.name, "Ada Lovelace");
        assert_eq!(a.country, "GB");
        assert_eq!(a.line2, None);
        assert_eq!(
            ShippingAddress::from_sealed(&a.to_sealable()),
            Some(a.clone())
        );
        assert_eq!(format!("{a:?}"), "ShippingAddress([redacted])");
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(parse("", "GB").unwrap_err().field, "name");
        assert_eq!(parse(&"x".repeat(201), "GB").unwrap_err().field, "name");
        assert!(
            parse(&"é".repeat(200), "GB").is_ok(),
            "characters, not bytes"
        );
        assert_eq!(parse("A\u{0}B", "GB").unwrap_err().field, "name");
        assert_eq!(parse("Ada", "UK").unwrap_err().field, "country");
    }
}
