//! What an access token says (DESIGN section 4): its claims and audiences. Signed and verified by
//! `crypto::jwt`; verified once per token by `auth::verified`.

use serde::{Deserialize, Serialize};

use crate::crypto::jwt::{SigningKeys, TokenError};

/// Who a token is for. A token is only ever accepted where its audience is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    Customer,
    Staff,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Customer => "customer",
            Audience::Staff => "staff",
        }
    }
}

/// The claims of an access token. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: Audience,
    pub sub: String,
    pub sid: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub auth_time: i64,
    /// How the session was signed in to (`auth::sessions::Factors`): `pwd`, `sms`, `otp`, `hwk`, `user`,
    /// `fed`, `mfa`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// What an access token must be: of this issuer, for this audience, valid at `now`.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub audience: Audience,
    /// The current time, Unix seconds.
    pub now: i64,
}

/// The claims of access token `token` if `keys` signed it and it meets `expect` (signature, `exp` and `nbf`
/// with the leeway against the system clock, issuer, audience).
pub fn verify(
    keys: &SigningKeys,
    token: &str,
    expect: &Expectations<'_>,
) -> Result<Claims, TokenError> {
    keys.verify(token, expect.issuer, expect.audience.as_str())
}
