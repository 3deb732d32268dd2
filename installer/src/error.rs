//! Refusals: the installer's decisions not to go on, each with a stable code that
//! `--output json` reports (`"code": "downgrade"`) and `docs/installer.md` lists, and a sentence
//! that says what is wrong and what to do. Everything else (an unreadable file, AWS unreachable)
//! stays a plain error, reported with the code `error`.
//!
//! Refusals travel inside `anyhow::Error` like every other failure; [`code_of`] finds the code
//! again, from a refusal of the installer, of the vendor's portal ([`crate::portal::Refusal`]),
//! or of a bundle check ([`bundles::Error`]).

use std::fmt;

use serde::Serialize;

/// Why the installer refused. The names are the JSON codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Code {
    /// The license is not bound to this AWS account or region.
    WrongAccount,
    /// The version is older than the installed one.
    Downgrade,
    /// A required release lies between the installed version and the target.
    RequiredRelease,
    /// The vendor withdrew the release.
    Yanked,
    /// The license does not cover the release.
    NotEntitled,
    /// The release needs a newer installer.
    InstallerTooOld,
    /// The artifact bucket belongs to another AWS account, or the recorded one is not ours.
    BucketNotOwned,
    /// The stack is being changed by someone else.
    StackBusy,
    /// The stack was not installed by Consign, or runs another app.
    ForeignStack,
    /// `install` on a stack that runs another version.
    AlreadyInstalled,
    /// `upgrade`, `rollback` or `uninstall` on a stack that is not installed.
    NotInstalled,
    /// Nothing to roll back to, or the rollback target changed.
    NoRollback,
    /// A `--param` the app does not have, or a capability the installer does not grant.
    BadParameter,
    /// A question that needs a yes was asked where nobody can answer.
    NeedsConfirmation,
    /// The admin said no.
    Declined,
    /// No `installer login` yet.
    NotLoggedIn,
    /// The vendor's keyset is not rooted in the pinned (or a confirmed) root key.
    UntrustedRoot,
    /// What the portal or a kit served is not what the vendor signed.
    Tampered,
    /// The kit is malformed or too new.
    BadKit,
    /// CloudFormation refused or rolled back the change.
    DeployFailed,
    /// The template grants an IAM action its signed manifest does not declare, or grants in a
    /// way no boundary can hold (a managed policy, `NotAction`, a user).
    UndeclaredPermission,
}

impl Code {
    /// The JSON code.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::WrongAccount => "wrong_account",
            Code::Downgrade => "downgrade",
            Code::RequiredRelease => "required_release",
            Code::Yanked => "yanked",
            Code::NotEntitled => "not_entitled",
            Code::InstallerTooOld => "installer_too_old",
            Code::BucketNotOwned => "bucket_not_owned",
            Code::StackBusy => "stack_busy",
            Code::ForeignStack => "foreign_stack",
            Code::AlreadyInstalled => "already_installed",
            Code::NotInstalled => "not_installed",
            Code::NoRollback => "no_rollback",
            Code::BadParameter => "bad_parameter",
            Code::NeedsConfirmation => "needs_confirmation",
            Code::Declined => "declined",
            Code::NotLoggedIn => "not_logged_in",
            Code::UntrustedRoot => "untrusted_root",
            Code::Tampered => "tampered",
            Code::BadKit => "bad_kit",
            Code::DeployFailed => "deploy_failed",
            Code::UndeclaredPermission => "undeclared_permission",
        }
    }

    /// Every code, for the docs and their test.
    pub const ALL: &'static [Code] = &[
        Code::WrongAccount,
        Code::Downgrade,
        Code::RequiredRelease,
        Code::Yanked,
        Code::NotEntitled,
        Code::InstallerTooOld,
        Code::BucketNotOwned,
        Code::StackBusy,
        Code::ForeignStack,
        Code::AlreadyInstalled,
        Code::NotInstalled,
        Code::NoRollback,
        Code::BadParameter,
        Code::NeedsConfirmation,
        Code::Declined,
        Code::NotLoggedIn,
        Code::UntrustedRoot,
        Code::Tampered,
        Code::BadKit,
        Code::DeployFailed,
        Code::UndeclaredPermission,
    ];
}

/// A refusal: its code and its sentence.
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub code: Code,
    /// What is wrong and what to do.
    pub detail: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Refused {}

/// A refusal with `code`, as an `anyhow::Error`.
pub fn refused(code: Code, detail: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Refused {
        code,
        detail: detail.into(),
    })
}

/// Returns early with a refusal: `refuse!(Downgrade, "{v} is older ...")`.
#[macro_export]
macro_rules! refuse {
    ($code:ident, $($fmt:tt)+) => {
        return Err($crate::error::refused($crate::error::Code::$code, format!($($fmt)+)))
    };
}

/// The stable code of an error: the installer's refusal, the portal's, a bundle check's, else
/// `error`.
pub fn code_of(err: &anyhow::Error) -> String {
    for cause in err.chain() {
        if let Some(r) = cause.downcast_ref::<Refused>() {
            return r.code.as_str().to_owned();
        }
        if let Some(r) = cause.downcast_ref::<crate::portal::Refusal>() {
            return r.code.clone();
        }
        if let Some(e) = cause.downcast_ref::<bundles::Error>() {
            return e.code().to_owned();
        }
    }
    "error".to_owned()
}
