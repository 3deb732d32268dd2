//! The installer's library, under a thin `installer` binary:
//! - the admin's AWS account ([`aws`]);
//! - verified releases from a portal or a kit ([`release`], [`tuf`], [`kit`], [`portal`]);
//! - deploying them with CloudFormation ([`deploy`]) through an artifact bucket that is proven
//!   to be the account's own ([`bucket`]), status and uninstall ([`inventory`]);
//! - the installation's record in the account ([`record`]);
//! - the IAM policy the installer needs ([`iam`]);
//! - its login ([`home`]) and its static install key ([`keys`]).

pub mod aws;
pub mod boundary;
pub mod bucket;
pub mod calls;
pub mod deploy;
pub mod error;
pub mod home;
pub mod iam;
pub mod inventory;
pub mod keys;
pub mod kit;
pub mod portal;
pub mod record;
pub mod redact;
pub mod release;
pub mod stack;
pub mod support;
pub mod tuf;
pub mod ui;
