//! Who acts: an authenticated member of a vendor with a role, and where a request came from.
//! The web layer (`http::auth`) resolves credentials to a [`Caller`]; the domain checks roles
//! and names the caller in the audit log.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{DomainError, DomainResult};

/// A member's role, ordered by what it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Support,
    /// Also manages apps, plans, customers, licenses and releases.
    Publisher,
    /// Also manages members, tokens of others, and keys.
    Owner,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Support => "support",
            Role::Publisher => "publisher",
            Role::Owner => "owner",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "support" => Some(Role::Support),
            "publisher" => Some(Role::Publisher),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The vendor's id.
    pub vendor_id: String,
    /// The vendor's slug.
    pub vendor_slug: String,
    /// The member acting.
    pub member_id: String,
    /// The member's email.
    pub email: String,
    /// The member's role.
    pub role: Role,
    /// The token used, if not a session.
    pub token_id: Option<String>,
    /// Request id and source address.
    pub meta: RequestMeta,
}

impl Caller {
    /// Refuses callers below `role`.
    pub fn require(&self, role: Role) -> DomainResult<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(DomainError::forbidden(format!(
                "this needs the {} role; {} is {}: ask an owner of {}",
                role.as_str(),
                self.email,
                self.role.as_str(),
                self.vendor_slug
            )))
        }
    }

    /// How the audit log names the caller.
    pub fn actor(&self) -> serde_json::Value {
        serde_json::json!({
            "member": self.member_id,
            "email": self.email,
            "role": self.role.as_str(),
            "token": self.token_id,
        })
    }
}

/// Where a request came from, for the audit log and rate limits.
#[derive(Clone, Debug)]
pub struct RequestMeta {
    /// The `x-request-id` the portal assigned (or the client sent).
    pub request_id: String,
    /// The peer's IP address.
    pub ip: String,
}
