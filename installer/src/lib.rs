//! The `installer`: the enterprise admin's command line.
//!
//! **Not built yet** (issue 6). It will log in with a license, list the versions the license is
//! entitled to, fetch and verify TUF metadata and bundles, decrypt them with keys granted by the
//! portal, and deploy them into the admin's own AWS account with a CloudFormation change set:
//! `plan`, `install`, `upgrade`, `rollback`, `uninstall`, `status`, and air-gapped installs from an
//! exported kit. License checks use the `license` crate's verification and entitlement API.
