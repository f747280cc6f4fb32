//! One-time codes: 6 digits from the operating system's generator, stored only as
//! HMAC-SHA256(OTP_PEPPER, verification id ‖ purpose ‖ code), compared in constant time.

use crate::crypto::{MacKey, constant_time_eq};
use crate::domain::Sensitive;

pub const CODE_LEN: usize = 6;

/// A uniformly random 6-digit code (rejection sampling, no modulo bias).
pub fn generate_code() -> Sensitive<String> {
    loop {
        let n = u32::from_be_bytes(crate::config::secrets::random_bytes::<4>());
        // 4_294_000_000 is the largest multiple of 1_000_000 below 2^32.
        if n < 4_294_000_000 {
            return Sensitive::new(format!("{:06}", n % 1_000_000));
        }
    }
}

pub fn code_hash(pepper: &MacKey, verification_id: &str, purpose: &str, code: &str) -> Vec<u8> {
    pepper
        .mac(&[
            verification_id.as_bytes(),
            purpose.as_bytes(),
            code.as_bytes(),
        ])
        .to_vec()
}

pub fn code_matches(
    pepper: &MacKey,
    verification_id: &str,
    purpose: &str,
    code: &str,
    stored: Option<&[u8]>,
) -> bool {
    let well_formed = code.len() == CODE_LEN && code.bytes().all(|b| b.is_ascii_digit());
    let computed = code_hash(pepper, verification_id, purpose, code);
    match stored {
        Some(stored) => constant_time_eq(&computed, stored) && well_formed,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_bound_to_their_id_and_purpose() {
        let pepper = MacKey::parse("p", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let code = generate_code();
        assert_eq!(code.expose().len(), 6);
        assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
        let stored = code_hash(&pepper, "v1", "signup", code.expose());
        assert!(code_matches(
            &pepper,
            "v1",
            "signup",
            code.expose(),
            Some(&stored)
        ));
        assert!(!code_matches(
            &pepper,
            "v2",
            "signup",
            code.expose(),
            Some(&stored)
        ));
        assert!(!code_matches(
            &pepper,
            "v1",
            "password_reset",
            code.expose(),
            Some(&stored)
        ));
        assert!(!code_matches(&pepper, "v1", "signup", code.expose(), None));
        let distinct: std::collections::HashSet<String> =
            (0..50).map(|_| generate_code().into_inner()).collect();
        assert!(distinct.len() > 40);
    }
}
