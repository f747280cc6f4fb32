//! Validated newtypes, free of HTTP and SQL: an invalid value cannot be constructed.

mod email;
mod password;
mod phone;
mod sensitive;

pub use email::{Email, InvalidEmail, mask_email};
pub use password::{NewPassword, PasswordError};
pub use phone::{InvalidPhone, Phone, mask_e164};
pub use sensitive::Sensitive;
