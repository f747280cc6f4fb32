//! Messages to people outside the shop: SMS (`sms`), and e-mail through a transactional outbox (`outbox`:
//! what features call; `sender`: the background delivery; `mailer`: SMTP or files; `templates`).

pub mod mailer;
pub mod outbox;
pub mod sender;
pub mod sms;
pub mod templates;
