//! The web side of the domain: extractors, authentication of callers, the problem+json
//! conversion of domain errors, and the middleware (idempotency, metrics, proxies).

pub mod auth;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod problem;
pub mod proxy;
pub mod reply;
