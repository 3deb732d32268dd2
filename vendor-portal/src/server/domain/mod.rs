//! The portal's rules, as typed functions over a database connection or a vendor transaction.
//! Route handlers and web pages both call these; nothing here knows HTTP, a route or a page.

pub mod access;
pub mod audit;
pub mod catalog;
pub mod entitlement;
pub mod error;
pub mod grants;
pub mod idempotency;
pub mod installations;
pub mod issuer;
pub mod keys;
pub mod licenses;
pub mod mail;
pub mod members;
pub mod proofs;
pub mod ratelimit;
pub mod releases;
pub mod sessions;
pub mod sso;
pub mod support;
pub mod trials;
pub mod tuf;
pub mod tx;
pub mod vendors;
pub mod webhooks;
