//! Black-box tests: the real application on port 0 with its own database, talked to over HTTP.
//! `TEST_DATABASE_URL=postgres://…` runs every test on PostgreSQL instead of SQLite.

mod browser;
mod cli;
mod config;
mod console;
mod contention;
mod crypto;
mod durability;
mod edge;
mod email;
mod fake_provider;
mod fake_smtp;
mod fake_stripe;
mod fake_twilio;
mod health;
mod helpers;
mod identity;
mod limits;
mod migrations;
mod orders;
mod passkeys;
mod platforms;
mod problems;
mod process_exit;
mod products;
mod second_factor;
mod sms;
mod soft_passkey;
mod staff;
mod statements;
mod webhooks;
