use zxcvbn::Score;

use super::Sensitive;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password has 8 to 128 characters")]
    Length,
    #[error("the password is too easy to guess: {0}")]
    Weak(String),
}

/// A new password that meets the policy: 8 to 128 characters and a zxcvbn score of at least 3.
#[derive(Debug, Clone)]
pub struct NewPassword(Sensitive<String>);

impl NewPassword {
    /// `context` holds what the password must not be built from (the phone, the name).
    pub fn parse(text: &str, context: &[&str]) -> Result<Self, PasswordError> {
        let chars = text.chars().count();
        if !(MIN_LEN..=MAX_LEN).contains(&chars) {
            return Err(PasswordError::Length);
        }
        let entropy = zxcvbn::zxcvbn(text, context);
        if entropy.score() < Score::Three {
            let mut advice: Vec<String> = Vec::new();
            if let Some(feedback) = entropy.feedback() {
                if let Some(warning) = feedback.warning() {
                    advice.push(warning.to_string());
                }
                advice.extend(feedback.suggestions().iter().map(ToString::to_string));
            }
            if advice.is_empty() {
                advice.push("Add another word or two; uncommon words are better.".to_owned());
            }
            return Err(PasswordError::Weak(advice.join(" ")));
        }
        Ok(Self(Sensitive::new(text.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert_eq!(
            NewPassword::parse("short", &[]).unwrap_err(),
            PasswordError::Length
        );
        assert_eq!(
            NewPassword::parse(&"x".repeat(129), &[]).unwrap_err(),
            PasswordError::Length
        );
        assert!(matches!(
            NewPassword::parse("password123", &[]),
            Err(PasswordError::Weak(_))
        ));
        assert!(matches!(
            NewPassword::parse("alice447700900123", &["alice", "447700900123"]),
            Err(PasswordError::Weak(_))
        ));
        assert!(NewPassword::parse("correct horse battery staple", &[]).is_ok());
    }
}
