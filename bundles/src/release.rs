//! What a published release says about itself in the signed TUF targets metadata: the `custom`
//! object of each target. The vendor's release key signs it (in `release push`, `release promote`,
//! `release yank`), so a compromised portal can neither move a version between channels, nor
//! un-yank it, nor lower its minimum installer version.
//!
//! The target itself is the release's signed bundle manifest (named [`target_name`], hashed
//! by TUF); the manifest lists every object by plaintext and ciphertext digest, so one verified
//! target pins the whole release.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// The `custom` object of a release's TUF target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseTarget {
    /// The app's slug.
    pub app: license::claims::Slug,
    /// The release's version.
    pub version: semver::Version,
    /// The channels the release is on (`stable`, `beta`, or a vendor's own).
    pub channels: Vec<license::claims::Slug>,
    /// The oldest installer that can install it.
    pub min_installer_version: semver::Version,
    /// The entitlement feature a license needs to receive it (`None`: any license for the app).
    pub entitlement: Option<license::claims::FeatureName>,
    /// Upgrades may not skip a required release.
    pub required: bool,
    /// Why the release was retracted, if it was. A yanked release is never offered or granted.
    pub yanked: Option<String>,
    /// The SHA-256 of the signed manifest (the target's content).
    pub manifest: Digest,
    /// When the vendor first published it (Unix seconds): licenses may be limited to releases
    /// published before a date.
    pub published_at: u64,
}

impl ReleaseTarget {
    /// The release a TUF target's `custom` object describes: the one reading of a target that
    /// the portal (checking targets a vendor publishes) and the installer (reading verified
    /// metadata) share.
    pub fn from_custom<'a>(
        custom: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
    ) -> Result<Self, serde_json::Error> {
        let object = serde_json::Value::Object(
            custom
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        serde_json::from_value(object)
    }

    /// Is the release on `channel`?
    pub fn on_channel(&self, channel: &str) -> bool {
        self.channels.iter().any(|c| c.as_str() == channel)
    }
}

/// The TUF target name of version `version` of `app`: `<app>-<version>.manifest.json`.
pub fn target_name(app: &str, version: &semver::Version) -> String {
    format!("{app}-{version}.manifest.json")
}
