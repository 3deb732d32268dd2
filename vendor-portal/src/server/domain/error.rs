//! The one error type of the domain layer: what kind of failure, a stable machine-readable code
//! and a sentence that says what was wrong and what to do. It knows nothing of HTTP; the web
//! layer turns it into `application/problem+json` in one place (`http::problem`), and the pages
//! into an HTML error page.

/// What kind of failure, which decides the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request is malformed (400).
    BadRequest,
    /// No valid credentials (401).
    Unauthorized,
    /// Refused: valid credentials without the role, or a license check that failed (403).
    Forbidden,
    /// It does not exist, or it is another vendor's (404).
    NotFound,
    /// The method does not apply to this thing (405).
    MethodNotAllowed,
    /// The change conflicts with the current state (409).
    Conflict,
    /// It existed and is gone for good (410).
    Gone,
    /// The request body is too large (413).
    TooLarge,
    /// The body is not in a format the operation reads (415).
    UnsupportedMediaType,
    /// The requested byte range is not inside the object (416).
    RangeNotSatisfiable,
    /// Well-formed but not acceptable (422).
    Invalid,
    /// Over a rate limit (429, with a retry delay).
    RateLimited,
    /// The portal failed; logged, and the caller learns nothing else (500).
    Internal,
    /// A dependency (database, blob store) is unavailable (503).
    Unavailable,
}

/// A failure of a domain operation.
#[derive(Debug)]
pub struct DomainError {
    /// What kind of failure.
    pub kind: Kind,
    /// A stable machine-readable code (`not_found`, `revoked`, ...).
    pub code: &'static str,
    /// What went wrong and what to do, for people.
    pub detail: String,
    /// Seconds to wait before retrying ([`Kind::RateLimited`], a busy database).
    pub retry_after: Option<u64>,
}

/// The domain's result type.
pub type DomainResult<T> = Result<T, DomainError>;

impl DomainError {
    /// An error of this kind, code and detail.
    pub fn new(kind: Kind, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Kind::BadRequest, "bad_request", detail)
    }

    /// Well-formed but not acceptable.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, "invalid", detail)
    }

    /// Not found, the same whether the thing does not exist or belongs to another vendor.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            Kind::NotFound,
            "not_found",
            format!("no {what} {id:?} exists for this vendor; list them to see the ids"),
        )
    }

    /// The change conflicts with the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, "conflict", detail)
    }

    /// No valid credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(Kind::Unauthorized, "unauthorized", detail)
    }

    /// Valid credentials without the needed role.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(Kind::Forbidden, "forbidden", detail)
    }

    /// A check refused the request, with its own stable code (`revoked`, `wrong_account`, ...).
    pub fn refused(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(Kind::Forbidden, code, detail)
    }

    /// Over a rate limit; retry in `retry_after` seconds.
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(Kind::RateLimited, "rate_limited", detail)
        }
    }

    /// The portal failed: logged here; the caller learns only that it happened.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            Kind::Internal,
            "internal",
            "the portal failed to handle this request; it has been logged with the request id (x-request-id); retry later",
        )
    }

    /// A dependency (database, blob store) is unavailable.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(Kind::Unavailable, "unavailable", detail)
    }

    /// The same error again, for answering several waiters with one failure.
    pub fn duplicate(&self) -> Self {
        Self {
            kind: self.kind,
            code: self.code,
            detail: self.detail.clone(),
            retry_after: self.retry_after,
        }
    }

    /// Whether the caller's request was at fault (as opposed to the portal or its dependencies).
    pub fn is_client_error(&self) -> bool {
        !matches!(self.kind, Kind::Internal | Kind::Unavailable)
    }
}

impl std::fmt::Display for DomainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.code)
    }
}

impl From<sqlx::Error> for DomainError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut => Self {
                retry_after: Some(1),
                ..Self::unavailable("the portal's database is busy; retry in a moment")
            },
            _ => Self::internal(format!("database: {err}")),
        }
    }
}

impl From<anyhow::Error> for DomainError {
    fn from(err: anyhow::Error) -> Self {
        Self::internal(format!("{err:#}"))
    }
}
