use std::fmt;

/// A phone number in E.164, parsed and validated with libphonenumber's metadata. Debug prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone {
    e164: String,
    region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid phone number in international form (like +44 7400 900123)")]
pub struct InvalidPhone;

impl Phone {
    /// Accepts international forms (`+44 7400 900123`, `+447400900123`, `00447400900123`).
    pub fn parse(text: &str) -> Result<Self, InvalidPhone> {
        let text = text.trim();
        if text.is_empty() || text.len() > 32 {
            return Err(InvalidPhone);
        }
        let text = match text.strip_prefix("00") {
            Some(rest) => format!("+{rest}"),
            None => text.to_owned(),
        };
        if !text.starts_with('+') {
            return Err(InvalidPhone);
        }
        let number = phonenumber::parse(None, &text).map_err(|_| InvalidPhone)?;
        if !phonenumber::is_valid(&number) {
            return Err(InvalidPhone);
        }
        let region = number
            .country()
            .id()
            .map(|id| id.as_ref().to_owned())
            .ok_or(InvalidPhone)?;
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        Ok(Self { e164, region })
    }

    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The ISO 3166-1 alpha-2 region, like `GB`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// `+44•••••••123`: the country code and the last three digits.
    pub fn masked(&self) -> String {
        mask_e164(&self.e164)
    }
}

/// Masks an E.164 number, keeping the `+`, up to three leading digits of the country code and the last three.
pub fn mask_e164(e164: &str) -> String {
    let digits: Vec<char> = e164.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return "•••".to_owned();
    }
    let head = if e164.starts_with("+1") { 1 } else { 2 };
    let tail = 3;
    let hidden = digits.len() - head - tail;
    let mut out = String::from("+");
    out.extend(&digits[..head]);
    out.extend(std::iter::repeat_n('•', hidden));
    out.extend(&digits[digits.len() - tail..]);
    out
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phone([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_e164() {
        for text in [
            "+44 7400 900123",
            "+447400900123",
            "00447400900123",
            " +44 (0)7400 900123 ",
        ] {
            let phone = Phone::parse(text).unwrap_or_else(|_| panic!("{text}"));
            assert_eq!(phone.e164(), "+447400900123");
            assert_eq!(phone.region(), "GB");
        }
        assert_eq!(Phone::parse("+1 202 555 0143").unwrap().region(), "US");
    }

    #[test]
    fn refuses_what_is_not_a_number() {
        for text in [
            "",
            "07700 900123",
            "+44 12",
            "+999 1234567",
            "hello",
            "+4474009001234567890",
        ] {
            assert!(Phone::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn masks_and_never_debugs_the_number() {
        let phone = Phone::parse("+447400900123").unwrap();
        assert_eq!(phone.masked(), "+44•••••••123");
        assert!(!format!("{phone:?}").contains("900123"));
    }
}
