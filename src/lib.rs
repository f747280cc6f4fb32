//! shopd: the backend of a mobile shop. See `docs/architecture.md` for the module map.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod limits;
pub mod notify;
pub mod orders;
pub mod payments;
pub mod staff;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod vault;
pub mod webhooks;
