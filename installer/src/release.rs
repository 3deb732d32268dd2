//! A release made ready to deploy, from a portal (after `installer login`) or from an air-gapped
//! kit: the license verified against the vendor's keyset (pinned root), the release found in the
//! vendor-signed TUF targets, its manifest read through the signed target, and its objects
//! decrypted on demand and checked against the manifest before anything uses them.

use std::collections::BTreeMap;
use std::io::{BufReader, Read as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use bundles::release::ReleaseTarget;
use bundles::{BundleManifest, BundleReader, Digest, KeysFile, Limits, ObjectEntry};
use futures_util::StreamExt as _;
use license::{Keyset, TrustPin, TrustedKeyset, UnixTime, VerifiedLicense, VerifyOptions};

use crate::home::Login;
use crate::portal::Portal;
use crate::{kit, tuf};

/// Where a release's objects come from.
pub enum Source {
    /// A portal, with the data keys it granted.
    Portal {
        /// The portal.
        portal: Portal,
        /// The vendor's slug.
        vendor: String,
        /// The license, compact, for downloads.
        license_compact: String,
        /// The granted keys (`None` until [`Release::grant`]).
        keys: Option<Box<KeysFile>>,
    },
    /// An opened, verified kit.
    Kit(Box<kit::OpenedKit>),
}

/// A verified release.
pub struct Release {
    /// The manifest, parsed from the bytes the signed target pins.
    pub manifest: BundleManifest,
    /// The manifest's exact bytes.
    pub manifest_bytes: Vec<u8>,
    /// SHA-256 of the manifest bytes.
    pub manifest_digest: Digest,
    /// What the vendor's signed targets say about it.
    pub target: ReleaseTarget,
    /// Every release of the app in the signed targets, newest first.
    pub all: Vec<ReleaseTarget>,
    /// The verified license.
    pub license: VerifiedLicense,
    /// The vendor's keyset, verified under the pinned root: its release keys must have signed
    /// the manifest.
    pub keyset: TrustedKeyset,
    /// The license, armoured (stored in the account for the agent).
    pub license_text: String,
    /// Where the objects come from.
    pub source: Source,
}

/// The verified license and keyset of a login.
pub struct Licensed {
    /// The verified license.
    pub license: VerifiedLicense,
    /// The vendor's keyset.
    pub keyset: TrustedKeyset,
}

/// Verifies `license_text` with `keyset_bytes` under the root pin `root` (and no older keyset
/// than `min_seq`).
pub fn verify_license(
    keyset_bytes: &[u8],
    root: &str,
    min_seq: u64,
    license_text: &str,
) -> Result<Licensed> {
    let keyset = Keyset::verify(
        keyset_bytes,
        &TrustPin {
            root_fingerprint: Some(root.to_owned()),
            min_seq,
        },
    )
    .context("the vendor's keyset is not trusted")?;
    let license = keyset
        .verify_license(license_text, &VerifyOptions::at(UnixTime::now()))
        .context("the license is not valid")?;
    Ok(Licensed { license, keyset })
}

/// Parses manifest bytes already authenticated by `target`'s signed TUF entry, and checks
/// that they describe that release (the signed custom fields and the manifest must agree).
pub fn parse_manifest(bytes: &[u8], target: &ReleaseTarget) -> Result<BundleManifest> {
    let manifest: BundleManifest = serde_json::from_slice(bytes)
        .map_err(|e| anyhow!("the release's manifest is not valid: {e}"))?;
    manifest.validate(&Limits::default())?;
    if manifest.app != target.app
        || manifest.version != target.version
        || Digest::of(bytes) != target.manifest
    {
        crate::refuse!(
            Tampered,
            "the manifest served for {} {} describes {} {}: refusing it",
            target.app,
            target.version,
            manifest.app,
            manifest.version
        );
    }
    Ok(manifest)
}

/// Defence in depth beside TUF: the manifest must carry a valid signature by one of the release
/// keys of the keyset the pinned root signed, so a portal holding a stolen targets key still
/// cannot ship a manifest the vendor's release key never signed.
pub fn verify_manifest_signature(
    manifest: &[u8],
    signature: &bundles::manifest::ManifestSignature,
    keyset: &TrustedKeyset,
) -> Result<()> {
    bundles::manifest::verify_manifest(
        manifest,
        signature,
        keyset,
        UnixTime::now(),
        &Limits::default(),
    )
    .map(|_| ())
    .map_err(|e| {
        crate::error::refused(
            crate::error::Code::Tampered,
            format!(
                "{e}: refusing the release (the vendor's release key did not sign this manifest; tell the vendor)"
            ),
        )
    })
}

/// What an installation could upgrade to, from the signed release list and the license.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Updates {
    /// The version installed.
    pub installed: String,
    /// Newer versions the license may install, oldest first.
    pub newer: Vec<String>,
    /// The newest of them.
    pub newest: Option<String>,
    /// The first of them that is required (upgrades may not skip it).
    pub required: Option<String>,
}

impl Updates {
    /// One line for people, with the command that upgrades `stack`.
    pub fn describe(&self, stack: &str) -> String {
        match (&self.newest, &self.required) {
            (None, _) => format!(
                "none: {} is the newest version your license may install",
                self.installed
            ),
            (Some(newest), required) => {
                let must = required.as_ref().map_or_else(String::new, |r| {
                    format!("; {r} is REQUIRED (upgrades may not skip it)")
                });
                format!(
                    "{} newer version(s) your license may install, newest {newest}{must}: installer upgrade --stack {stack} --version {newest}",
                    self.newer.len()
                )
            }
        }
    }
}

/// The logged-in app's verified metadata: license, keyset and the signed list of releases.
pub struct Catalog {
    /// The login.
    pub login: Login,
    /// The portal.
    pub portal: Portal,
    /// The verified license and keyset.
    pub licensed: Licensed,
    /// The loaded TUF repository.
    pub repo: tough::Repository,
    /// Every release, newest first.
    pub releases: Vec<ReleaseTarget>,
}

impl Catalog {
    /// Loads the login, re-verifies the license against the current keyset and loads the app's
    /// metadata through TUF (refusing rollbacks against this machine's datastore).
    pub async fn load() -> Result<Self> {
        let mut login = Login::read()?;
        let portal = Portal::new(&login.portal)?;
        let keyset = portal.keyset(&login.vendor).await?;
        let licensed = verify_license(
            &keyset,
            &login.root_fingerprint,
            login.keyset_seq,
            &login.license,
        )?;
        if licensed.keyset.keyset().seq > login.keyset_seq {
            login.keyset_seq = licensed.keyset.keyset().seq;
            login.save()?;
        }
        let repo = tuf::load_over_http(
            &portal.tuf_base(&login.vendor, &login.app),
            &login.root_fingerprint,
            |n| portal.root(&login.vendor, &login.app, n),
            &login.datastore()?,
        )
        .await?;
        let releases = tuf::releases(&repo)?;
        Ok(Self {
            login,
            portal,
            licensed,
            repo,
            releases,
        })
    }

    /// Why the license may not install `target` (`None`: it may). Checks the distribution
    /// window, the channels and the entitlement the vendor signed into the target.
    pub fn refusal(&self, target: &ReleaseTarget) -> Option<String> {
        licensed_for(&self.licensed.license, target)
    }

    /// The releases newer than `installed` that the license may install (unyanked), oldest first.
    pub fn updates_after(&self, installed: &semver::Version) -> Updates {
        let mut newer: Vec<&ReleaseTarget> = self
            .releases
            .iter()
            .filter(|r| r.version > *installed && r.yanked.is_none() && self.refusal(r).is_none())
            .collect();
        newer.sort_by(|a, b| a.version.cmp(&b.version));
        Updates {
            installed: installed.to_string(),
            newer: newer.iter().map(|r| r.version.to_string()).collect(),
            newest: newer.last().map(|r| r.version.to_string()),
            required: newer
                .iter()
                .find(|r| r.required)
                .map(|r| r.version.to_string()),
        }
    }

    /// The newest release the license may install (unyanked), if any.
    pub fn newest_installable(&self) -> Option<&ReleaseTarget> {
        self.releases
            .iter()
            .filter(|r| r.yanked.is_none() && self.refusal(r).is_none())
            .max_by(|a, b| a.version.cmp(&b.version))
    }

    /// The release `version`, verified and ready to be granted.
    pub async fn release(self, version: &semver::Version) -> Result<Release> {
        let target = self
            .releases
            .iter()
            .find(|r| r.version == *version)
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "{} {version} is not published: `installer versions` lists what is",
                    self.login.app
                )
            })?;
        check_target(&target, &self.licensed.license)?;
        let bytes = tuf::read_manifest(&self.repo, &target).await?;
        let manifest = parse_manifest(&bytes, &target)?;
        let license_compact = license::armor::dearmor(&self.login.license)?;
        Ok(Release {
            manifest,
            manifest_digest: Digest::of(&bytes),
            manifest_bytes: bytes,
            target,
            all: self.releases,
            license: self.licensed.license,
            keyset: self.licensed.keyset,
            license_text: self.login.license,
            source: Source::Portal {
                portal: self.portal,
                vendor: self.login.vendor,
                license_compact,
                keys: None,
            },
        })
    }
}

/// Why `license` may not install `target`, if it may not: the license crate's distribution
/// rules ([`VerifiedLicense::may_receive`]), the same the portal applies before it grants keys.
pub fn licensed_for(license: &VerifiedLicense, target: &ReleaseTarget) -> Option<String> {
    let Some(published_at) = UnixTime::from_secs(target.published_at) else {
        return Some("the release's publish time is not valid".into());
    };
    let channels: Vec<&str> = target.channels.iter().map(|c| c.as_str()).collect();
    license
        .may_receive(&license::Offer {
            app: target.app.as_str(),
            version: &target.version,
            channels: &channels,
            published_at,
            entitlement: target.entitlement.as_ref().map(|f| f.as_str()),
        })
        .err()
        .map(|denial| denial.to_string())
}

/// Refuses a yanked release, one outside the license, or one this installer is too old for.
pub fn check_target(target: &ReleaseTarget, license: &VerifiedLicense) -> Result<()> {
    if let Some(reason) = &target.yanked {
        crate::refuse!(
            Yanked,
            "{} {} was withdrawn by the vendor ({reason}): pick another version",
            target.app,
            target.version
        );
    }
    if let Some(reason) = licensed_for(license, target) {
        crate::refuse!(
            NotEntitled,
            "the license does not cover {} {}: {reason}; ask the vendor for a license that does",
            target.app,
            target.version
        );
    }
    let ours = installer_version();
    if target.min_installer_version > ours {
        crate::refuse!(
            InstallerTooOld,
            "{} {} needs installer {} or later (this is {ours}): update the installer",
            target.app,
            target.version,
            target.min_installer_version
        );
    }
    Ok(())
}

/// This installer's version.
pub fn installer_version() -> semver::Version {
    semver::Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(semver::Version::new(0, 0, 0))
}

/// Opens a kit with the install key in `key_dir`, trusting the vendor root `root`.
pub async fn from_kit(kit_path: &Path, key_dir: &Path, root: &str) -> Result<Release> {
    let key = crate::keys::read(key_dir)?;
    let index = kit::peek(kit_path)?;
    let datastore = crate::home::datastore(&index.vendor, &index.app)?;
    let opened = kit::open(kit_path, &key, root, &datastore).await?;
    let licensed = verify_license(&opened.keyset, root, 0, &opened.license)?;
    if licensed.license.claims().jti.as_str() != opened.index.license {
        crate::refuse!(
            BadKit,
            "the kit's license is not the one its index names: refusing the kit"
        );
    }
    check_target(&opened.release, &licensed.license)?;
    verify_manifest_signature(&opened.manifest, &opened.signature, &licensed.keyset)?;
    let manifest = parse_manifest(&opened.manifest, &opened.release)?;
    let all = opened.all.clone();
    Ok(Release {
        manifest,
        manifest_digest: Digest::of(&opened.manifest),
        manifest_bytes: opened.manifest.clone(),
        target: opened.release.clone(),
        all,
        license: licensed.license,
        keyset: licensed.keyset,
        license_text: opened.license.clone(),
        source: Source::Kit(Box::new(opened)),
    })
}

impl Release {
    /// The app's slug.
    pub fn app(&self) -> &str {
        self.manifest.app.as_str()
    }

    /// Asks the portal for the data keys (the portal's last word on the license: revocation,
    /// suspension, the account binding). A kit already carries its keys.
    /// The grant carries a proof of `aws`'s account (a signed `sts:GetCallerIdentity`).
    pub async fn grant(&mut self, aws: &crate::aws::Aws) -> Result<()> {
        let version = self.manifest.version.to_string();
        let app = self.app().to_owned();
        if let Source::Portal {
            portal,
            keys,
            license_compact,
            ..
        } = &mut self.source
        {
            let proof = aws.prove(portal).await?;
            let granted = portal
                .grant(license_compact, &app, &version, &aws.account, proof)
                .await?;
            verify_manifest_signature(&self.manifest_bytes, &granted.signature, &self.keyset)?;
            granted
                .keys
                .check_belongs_to(&self.manifest_bytes, &app, &self.manifest.version)?;
            *keys = Some(Box::new(granted.keys));
        }
        Ok(())
    }

    /// Registers the installation `stack` in `account` and `region` with the portal, as an agent
    /// does when it activates, so the vendor counts it from the install on, whether or not an
    /// agent ever runs. It happens before the account changes, so a license whose installations
    /// are all in use is refused first. The answer's status must verify under the pinned keyset.
    /// A kit has no portal: nothing to do (`None`).
    pub async fn register(&self, aws: &crate::aws::Aws, stack: &str) -> Result<Option<String>> {
        use license::checkin::{ACTIVATION, Activation, Placement, Signed, fresh_nonce};
        let Source::Portal { portal, .. } = &self.source else {
            return Ok(None);
        };
        let license_id = self.license.claims().jti.clone();
        let key = crate::home::installation_key(license_id.as_str())?;
        let nonce = fresh_nonce()?;
        let account_proof = aws.prove(portal).await?;
        let activation = Activation {
            license: self.license_text.clone(),
            public_key: key.public_key(),
            account_proof,
            placement: Placement {
                aws_account: aws.account.clone(),
                region: aws.region.clone(),
                stack: stack.to_owned(),
                version: self.manifest.version.to_string(),
            },
            nonce: nonce.clone(),
            time: UnixTime::now(),
        };
        let signed = Signed::sign(ACTIVATION, &activation, &key)?;
        let answer = portal.activate(&signed).await?;
        self.keyset
            .verify_status(&answer.status, &license_id, &nonce)
            .map_err(|e| {
                anyhow!(
                    "the portal's answer to the installation's registration does not verify under the pinned keyset ({e}): nothing was changed; check the portal address"
                )
            })?;
        Ok(Some(answer.installation))
    }

    /// Gives back the seat [`Release::register`] took, when a first install stops before
    /// anything was deployed (the admin answered no).
    pub async fn unregister(&self, account: &str, region: &str, stack: &str) -> Result<()> {
        if let Source::Portal { portal, .. } = &self.source {
            portal
                .free_seat(&self.license_text, account, region, stack)
                .await?;
        }
        Ok(())
    }

    /// Decrypts `wanted` objects into `dir`, each checked against the manifest; returns each
    /// object's plaintext file by path. `progress` counts sealed bytes.
    pub async fn fetch(
        &self,
        wanted: &[ObjectEntry],
        dir: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BTreeMap<String, PathBuf>> {
        let mut out = BTreeMap::new();
        match &self.source {
            Source::Portal {
                portal,
                vendor,
                license_compact,
                keys,
            } => {
                let keys = keys
                    .as_ref()
                    .ok_or_else(|| anyhow!("the release's keys were not granted yet"))?;
                let mut tasks = futures_util::stream::iter(wanted.iter().map(|entry| async move {
                    let sealed = dir.join(format!("{}.sealed", entry.sealed_digest.hex()));
                    portal
                        .download(
                            vendor,
                            license_compact,
                            &entry.sealed_digest.to_string(),
                            entry.sealed_size,
                            &sealed,
                            progress,
                        )
                        .await
                        .with_context(|| format!("cannot download {}", entry.path))?;
                    let plain = dir.join(entry.digest.hex());
                    open_object(keys, entry, &sealed, &plain)?;
                    let _ = std::fs::remove_file(&sealed);
                    Ok::<_, anyhow::Error>((entry.path.to_string(), plain))
                }))
                .buffer_unordered(4);
                while let Some(result) = tasks.next().await {
                    let (path, file) = result?;
                    out.insert(path, file);
                }
            }
            Source::Kit(opened) => {
                let file = std::fs::File::open(&opened.bundle).context("the kit has no bundle")?;
                let mut reader = BundleReader::open_pinned(
                    BufReader::new(file),
                    &self.manifest_digest,
                    &Limits::default(),
                )?;
                while let Some((entry, mut object)) = reader.next_object()? {
                    if !wanted.iter().any(|w| w.path == entry.path) {
                        std::io::copy(&mut object, &mut std::io::sink())
                            .context("the kit's bundle is damaged")?;
                        continue;
                    }
                    let plain = dir.join(entry.digest.hex());
                    let key = opened
                        .keys
                        .key_for(&entry.digest)
                        .ok_or_else(|| anyhow!("the kit's keys have no key for {}", entry.path))?;
                    decrypt(key, &entry, &mut object, &plain)?;
                    progress(entry.sealed_size);
                    out.insert(entry.path.to_string(), plain);
                }
            }
        }
        Ok(out)
    }
}

fn open_object(keys: &KeysFile, entry: &ObjectEntry, sealed: &Path, plain: &Path) -> Result<()> {
    let key = keys
        .key_for(&entry.digest)
        .ok_or_else(|| anyhow!("the granted keys have no key for {}", entry.path))?;
    let mut file = BufReader::with_capacity(
        256 * 1024,
        std::fs::File::open(sealed).with_context(|| format!("cannot read {}", sealed.display()))?,
    );
    decrypt(key, entry, &mut file, plain)
}

/// Decrypts one sealed object into `plain` (kept only when it authenticated completely and its
/// sealed digest is the signed one).
fn decrypt(
    key: &bundles::seal::DataKey,
    entry: &ObjectEntry,
    reader: &mut dyn std::io::Read,
    plain: &Path,
) -> Result<()> {
    let tmp = plain.with_extension("partial");
    let result = (|| {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?,
        );
        let sealed = bundles::seal::open(
            key,
            entry.path.as_str(),
            &entry.digest,
            entry.size,
            reader.take(entry.sealed_size),
            &mut out,
        )?;
        std::io::Write::flush(&mut out)?;
        if sealed.sealed_digest != entry.sealed_digest {
            crate::refuse!(
                Tampered,
                "object {} is not the one the vendor signed (its sealed digest differs): refusing the release",
                entry.path
            );
        }
        std::fs::rename(&tmp, plain)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("object {} is refused", entry.path))
}
