//! Messages to people outside the shop: SMS for now.

pub mod sms;
