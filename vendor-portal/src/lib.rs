//! The Consign vendor portal: the server ([`server`]), the HTTP client the vendor's commands use
//! ([`client`]), and the vendor's command line ([`cli`]).

pub mod appdir;
pub mod audit_chain;
pub mod cli;
pub mod client;
pub mod keydir;
pub mod server;
pub mod tuf;
