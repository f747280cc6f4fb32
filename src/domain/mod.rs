//! Validated newtypes, free of HTTP and SQL.

mod sensitive;

pub use sensitive::Sensitive;
