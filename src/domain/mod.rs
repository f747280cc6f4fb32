//! Validated newtypes, free of HTTP and SQL: an invalid value cannot be constructed.

mod address;
mod country;
mod email;
mod money;
mod password;
mod phone;
mod sensitive;

pub use address::{InvalidAddress, MAX_FIELD_CHARS, ShippingAddress};
pub use country::country_code;
pub use email::{Email, InvalidEmail, mask_email};
pub use money::Money;
pub use password::{NewPassword, PasswordError};
pub use phone::{InvalidPhone, Phone, mask_e164};
pub use sensitive::Sensitive;
