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

/// A phone number fit for a log: the country code and the last 3 digits of an E.164 number, every other digit
/// a `•` (`+447700900123` → `+44•••••••123`). Anything that is not E.164 (`+` and 7 to 15 ASCII digits) gives
/// `•••`, showing nothing.
pub fn mask_e164(e164: &str) -> String {
    const HIDDEN: &str = "•••";
    let Some(digits) = e164.strip_prefix('+') else {
        return HIDDEN.to_owned();
    };
    if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return HIDDEN.to_owned();
    }
    let country = country_code_len(digits);
    let tail = digits.len() - 3;
    format!(
        "+{}{}{}",
        &digits[..country],
        "•".repeat(tail - country),
        &digits[tail..]
    )
}

/// The length of the country code an E.164 number (without `+`) starts with. Country codes are prefix-free:
/// 1 and 7 are one digit, the two-digit ones are listed, all others are three digits.
fn country_code_len(digits: &str) -> usize {
    const TWO_DIGIT: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if digits.get(..2).is_some_and(|two| TWO_DIGIT.contains(&two)) {
        2
    } else {
        3
    }
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
    fn mask_e164_keeps_the_country_code_and_the_last_three_digits() {
        assert_eq!(mask_e164("+447700900123"), "+44•••••••123");
        assert_eq!(mask_e164("+15005550006"), "+1•••••••006");
        assert_eq!(mask_e164("+79161234567"), "+7•••••••567");
        assert_eq!(mask_e164("+353861234567"), "+353••••••567");
        assert_eq!(mask_e164("+4915112345678"), "+49••••••••678");
        assert_eq!(mask_e164("+6831234"), "+683•234");
    }

    #[test]
    fn mask_e164_shows_nothing_of_what_is_not_e164() {
        for text in [
            "",
            "+",
            "447700900123",
            "07700 900123",
            "+44 7700 900123",
            "+44770090012x",
            "+123456",
            "+1234567890123456",
            "+٤٤٧٧٠٠٩٠٠١٢٣",
        ] {
            assert_eq!(mask_e164(text), "•••", "{text:?}");
        }
    }

    #[test]
    fn masks_and_never_debugs_the_number() {
        let phone = Phone::parse("+447400900123").unwrap();
        assert_eq!(phone.masked(), "+44•••••••123");
        assert!(!format!("{phone:?}").contains("900123"));
    }
}
