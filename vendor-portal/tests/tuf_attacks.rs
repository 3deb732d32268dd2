//! Attacks on release metadata, each a named test: the installer's TUF client
//! (`installer::tuf`, over tough) must refuse every one. The metadata is signed with the same code
//! the vendor's tools and the portal use (`vendor_portal::tuf`) and then tampered with as an
//! attacker holding the portal (its online key, its files) would.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};

use bundles::Digest;
use bundles::release::{ReleaseTarget, target_name};
use license::SigningKey;
use tough::schema::{Root, Signed, Targets};
use vendor_portal::tuf;

#[path = "common/attacker.rs"]
mod attacker;
use attacker::RootAttack;

const DAY: i64 = 86_400;

fn now() -> i64 {
    license::UnixTime::now().as_secs() as i64
}

struct Repo {
    dir: tempfile::TempDir,
    root_key: SigningKey,
    release_key: SigningKey,
    online_key: SigningKey,
}

impl Repo {
    fn new() -> Self {
        let repo = Self {
            dir: tempfile::tempdir().unwrap(),
            root_key: SigningKey::generate().unwrap(),
            release_key: SigningKey::generate().unwrap(),
            online_key: SigningKey::generate().unwrap(),
        };
        std::fs::create_dir_all(repo.metadata()).unwrap();
        std::fs::create_dir_all(repo.targets_dir()).unwrap();
        let root = repo.root_doc(1, &repo.root_key, &repo.release_key);
        repo.write(
            "1.root.json",
            &tuf::to_bytes(&tuf::sign(root, &[&repo.root_key]).unwrap()).unwrap(),
        );
        repo
    }

    fn metadata(&self) -> PathBuf {
        self.dir.path().join("metadata")
    }

    fn targets_dir(&self) -> PathBuf {
        self.dir.path().join("targets")
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.metadata().join(name), bytes).unwrap();
    }

    fn root_doc(&self, version: u64, root: &SigningKey, release: &SigningKey) -> Root {
        let (root_pub, release_pub, online_pub) = (
            root.public_key(),
            release.public_key(),
            self.online_key.public_key(),
        );
        tuf::root(
            version,
            now() + 365 * DAY,
            &tuf::RootKeys {
                root: vec![&root_pub],
                targets: vec![&release_pub],
                online: &online_pub,
            },
        )
        .unwrap()
    }

    /// Targets `version` listing releases 1.0.0 ..= 1.`version-1`.0, signed with `key`.
    fn targets(&self, version: u64, key: &SigningKey) -> Signed<Targets> {
        let targets = tuf::next_targets(None, now(), |t| {
            for minor in 0..version {
                let v = semver::Version::new(1, minor, 0);
                let manifest = format!("{{\"manifest of\":\"{v}\"}}").into_bytes();
                let info = ReleaseTarget {
                    app: license::claims::Slug::new("blog").unwrap(),
                    version: v.clone(),
                    channels: vec![license::claims::Slug::new("stable").unwrap()],
                    min_installer_version: semver::Version::new(0, 1, 0),
                    entitlement: None,
                    required: false,
                    yanked: None,
                    manifest: Digest::of(&manifest),
                    published_at: 1,
                };
                let name = target_name("blog", &v);
                std::fs::write(
                    self.targets_dir()
                        .join(format!("{}.{name}", Digest::of(&manifest).hex())),
                    &manifest,
                )
                .unwrap();
                t.targets.insert(
                    tough::TargetName::new(name).unwrap(),
                    tuf::target(manifest.len() as u64, &info).unwrap(),
                );
            }
            Ok(())
        })
        .unwrap();
        let mut targets = targets;
        targets.version = std::num::NonZeroU64::new(version).unwrap();
        tuf::sign(targets, &[key]).unwrap()
    }

    /// Publishes targets, snapshot and timestamp at `version`, the timestamp expiring at
    /// `timestamp_expires`; returns the snapshot's bytes.
    fn publish(&self, version: u64, targets: &Signed<Targets>, timestamp_expires: i64) -> Vec<u8> {
        self.write(
            &format!("{version}.targets.json"),
            &tuf::to_bytes(targets).unwrap(),
        );
        let snapshot = tuf::sign(
            tuf::snapshot(version, now() + 7 * DAY, targets.signed.version.get()).unwrap(),
            &[&self.online_key],
        )
        .unwrap();
        let snapshot_bytes = tuf::to_bytes(&snapshot).unwrap();
        self.write(&format!("{version}.snapshot.json"), &snapshot_bytes);
        self.timestamp(version, timestamp_expires, version, &snapshot_bytes);
        snapshot_bytes
    }

    fn timestamp(&self, version: u64, expires: i64, snapshot_version: u64, snapshot: &[u8]) {
        let ts = tuf::sign(
            tuf::timestamp_role(version, expires, snapshot_version, snapshot).unwrap(),
            &[&self.online_key],
        )
        .unwrap();
        self.write("timestamp.json", &tuf::to_bytes(&ts).unwrap());
    }

    fn root1(&self) -> Vec<u8> {
        std::fs::read(self.metadata().join("1.root.json")).unwrap()
    }

    fn pin(&self) -> String {
        self.root_key.public_key().fingerprint()
    }

    async fn load(&self, datastore: &Path) -> anyhow::Result<Vec<ReleaseTarget>> {
        load_folder(self.dir.path(), &self.pin(), datastore).await
    }

    /// The attacker's repository for `attack` over this vendor's releases, in a folder of its
    /// own laid out like this one.
    fn attacker(&self, attack: RootAttack) -> tempfile::TempDir {
        let real = self.targets(2, &self.release_key).signed;
        let files = attacker::repository(attack, &self.root_key, &real, b"{\"manifest\":1}");
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            let path = match name.strip_prefix("targets/") {
                Some(target) => dir.path().join("targets").join(target),
                None => dir.path().join("metadata").join(name),
            };
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        dir
    }
}

/// Loads the repository in `dir` (`metadata/`, `targets/`) as the installer does, pinned to
/// `pin`, and reads every manifest.
async fn load_folder(
    dir: &Path,
    pin: &str,
    datastore: &Path,
) -> anyhow::Result<Vec<ReleaseTarget>> {
    let metadata = dir.join("metadata");
    let repo = installer::tuf::load_pinned(
        pin,
        |n| {
            let root = std::fs::read(metadata.join(format!("{n}.root.json")));
            std::future::ready(root.map_err(anyhow::Error::from))
        },
        url::Url::from_directory_path(&metadata).unwrap(),
        url::Url::from_directory_path(dir.join("targets")).unwrap(),
        datastore,
        tough::FilesystemTransport,
    )
    .await?;
    let releases = installer::tuf::releases(&repo)?;
    for release in &releases {
        installer::tuf::read_manifest(&repo, release).await?;
    }
    Ok(releases)
}

/// The attack is refused with a sentence naming the pinned fingerprint, and nothing reaches the
/// datastore.
async fn attacker_root_refused(attack: RootAttack) {
    let repo = Repo::new();
    repo.publish(1, &repo.targets(1, &repo.release_key), now() + DAY);
    let evil = repo.attacker(attack);
    let ds = tempfile::tempdir().unwrap();
    let datastore = ds.path().join("tuf");
    let error = format!(
        "{:#}",
        load_folder(evil.path(), &repo.pin(), &datastore)
            .await
            .expect_err("the attacker's root was accepted")
    );
    assert!(error.contains(&repo.pin()), "{error}");
    assert!(error.contains("refused"), "{error}");
    assert!(
        !datastore.exists(),
        "the refused root reached the datastore"
    );
}

fn refused(result: anyhow::Result<Vec<ReleaseTarget>>, says: &str) {
    let error = format!("{:#}", result.expect_err("the attack was accepted"));
    assert!(
        error.to_lowercase().contains(says),
        "{error:?} does not say {says:?}"
    );
}

#[tokio::test]
async fn honest_metadata_loads() {
    let repo = Repo::new();
    repo.publish(1, &repo.targets(1, &repo.release_key), now() + DAY);
    let ds = tempfile::tempdir().unwrap();
    let releases = repo.load(ds.path()).await.unwrap();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].version.to_string(), "1.0.0");
}

#[tokio::test]
async fn rollback_to_older_metadata_is_refused() {
    let repo = Repo::new();
    let old_targets = repo.targets(1, &repo.release_key);
    let old_snapshot = repo.publish(1, &old_targets, now() + DAY);
    repo.publish(2, &repo.targets(2, &repo.release_key), now() + DAY);
    let ds = tempfile::tempdir().unwrap();
    assert_eq!(repo.load(ds.path()).await.unwrap().len(), 2);
    // The attacker serves the older, still validly signed and unexpired timestamp.
    repo.timestamp(1, now() + DAY, 1, &old_snapshot);
    refused(repo.load(ds.path()).await, "previously fetched version 2");
}

#[tokio::test]
async fn frozen_timestamp_is_refused() {
    let repo = Repo::new();
    repo.publish(1, &repo.targets(1, &repo.release_key), now() - 3600);
    let ds = tempfile::tempdir().unwrap();
    refused(repo.load(ds.path()).await, "expired");
}

#[tokio::test]
async fn mix_and_match_of_snapshot_and_targets_is_refused() {
    let repo = Repo::new();
    let old_targets = repo.targets(1, &repo.release_key);
    repo.publish(2, &repo.targets(2, &repo.release_key), now() + DAY);
    // Snapshot 2 names targets version 2; the attacker serves the older targets in its place.
    repo.write("2.targets.json", &tuf::to_bytes(&old_targets).unwrap());
    let ds = tempfile::tempdir().unwrap();
    refused(repo.load(ds.path()).await, "version");
    // And a snapshot that is not the one the timestamp hashes.
    let repo = Repo::new();
    repo.publish(1, &repo.targets(1, &repo.release_key), now() + DAY);
    let other = tuf::sign(
        tuf::snapshot(1, now() + 6 * DAY, 1).unwrap(),
        &[&repo.online_key],
    )
    .unwrap();
    repo.write("1.snapshot.json", &tuf::to_bytes(&other).unwrap());
    let ds = tempfile::tempdir().unwrap();
    assert!(repo.load(ds.path()).await.is_err());
}

#[tokio::test]
async fn compromised_portal_re_signing_targets_is_refused() {
    let repo = Repo::new();
    repo.publish(1, &repo.targets(1, &repo.release_key), now() + DAY);
    // The portal's own (online) key signs targets of its choosing, with snapshot and timestamp
    // to match: it holds every key but the vendor's release key.
    let forged = repo.targets(2, &repo.online_key);
    repo.publish(2, &forged, now() + DAY);
    let ds = tempfile::tempdir().unwrap();
    refused(repo.load(ds.path()).await, "signature");
    // Nor can it swap a target's content under the vendor's signature.
    let repo = Repo::new();
    let mut targets = repo.targets(1, &repo.release_key);
    let name = targets.signed.targets.keys().next().unwrap().clone();
    std::fs::write(
        repo.targets_dir().join(format!(
            "{}.{}",
            Digest::of(b"{\"manifest of\":\"1.0.0\"}").hex(),
            name.raw()
        )),
        b"{\"manifest of\":\"evil!\"}",
    )
    .unwrap();
    targets.signatures.clear();
    let targets = tuf::sign(targets.signed, &[&repo.release_key]).unwrap();
    repo.publish(1, &targets, now() + DAY);
    let ds = tempfile::tempdir().unwrap();
    assert!(repo.load(ds.path()).await.is_err());
}

#[tokio::test]
async fn endless_data_is_refused() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let repo = Repo::new();
    repo.publish(1, &repo.targets(1, &repo.release_key), now() + DAY);
    // An HTTP server that answers timestamp.json with bytes that never end.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let root = repo.root1();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let root = root.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&request[..n]).to_string();
                if text.starts_with("GET /metadata/1.root.json") {
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", root.len());
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&root).await;
                    return;
                }
                if !text.starts_with("GET /metadata/timestamp.json") {
                    let _ = socket
                        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\n\r\n{\"signed\":\"")
                    .await;
                let block = vec![b'a'; 64 * 1024];
                while socket.write_all(&block).await.is_ok() {
                    counter.fetch_add(block.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let ds = tempfile::tempdir().unwrap();
    let result = installer::tuf::load(
        &repo.root1(),
        url::Url::parse(&format!("http://{addr}/metadata/")).unwrap(),
        url::Url::parse(&format!("http://{addr}/targets/")).unwrap(),
        ds.path(),
        installer::tuf::HttpTransport::new().unwrap(),
    )
    .await;
    let error = format!("{:#}", result.expect_err("endless data was accepted"));
    assert!(error.contains("Maximum size 65536"), "{error}");
    // The client stopped reading near its limit, far short of "endless".
    let read = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read < 64 * 1024 * 1024, "{read} bytes were sent");
}

#[tokio::test]
async fn release_key_rotation_keeps_working_for_existing_customers() {
    let repo = Repo::new();
    repo.publish(1, &repo.targets(1, &repo.release_key), now() + DAY);
    let ds = tempfile::tempdir().unwrap();
    repo.load(ds.path()).await.unwrap();
    // The vendor rotates the release key: root 2 (signed by the root key) names the new one.
    let new_release = SigningKey::generate().unwrap();
    let root2 = repo.root_doc(2, &repo.root_key, &new_release);
    repo.write(
        "2.root.json",
        &tuf::to_bytes(&tuf::sign(root2, &[&repo.root_key]).unwrap()).unwrap(),
    );
    repo.publish(2, &repo.targets(2, &new_release), now() + DAY);
    assert_eq!(repo.load(ds.path()).await.unwrap().len(), 2);
    // The retired key no longer signs anything customers accept.
    repo.publish(3, &repo.targets(3, &repo.release_key), now() + DAY);
    refused(repo.load(ds.path()).await, "signature");
}

#[tokio::test]
async fn root_key_rotation_keeps_working_for_existing_customers() {
    let repo = Repo::new();
    repo.publish(1, &repo.targets(1, &repo.release_key), now() + DAY);
    let ds = tempfile::tempdir().unwrap();
    repo.load(ds.path()).await.unwrap();
    // Root 2 moves to a new root key, signed by the old and the new.
    let new_root = SigningKey::generate().unwrap();
    let root2 = repo.root_doc(2, &new_root, &repo.release_key);
    repo.write(
        "2.root.json",
        &tuf::to_bytes(&tuf::sign(root2, &[&repo.root_key, &new_root]).unwrap()).unwrap(),
    );
    // Root 3 is signed by the new key alone.
    let root3 = repo.root_doc(3, &new_root, &repo.release_key);
    repo.write(
        "3.root.json",
        &tuf::to_bytes(&tuf::sign(root3, &[&new_root]).unwrap()).unwrap(),
    );
    repo.publish(2, &repo.targets(2, &repo.release_key), now() + DAY);
    assert_eq!(repo.load(ds.path()).await.unwrap().len(), 2);

    // A new root signed only by a key the old root never named is refused.
    let repo = Repo::new();
    repo.publish(1, &repo.targets(1, &repo.release_key), now() + DAY);
    let usurper = SigningKey::generate().unwrap();
    let root2 = repo.root_doc(2, &usurper, &repo.release_key);
    repo.write(
        "2.root.json",
        &tuf::to_bytes(&tuf::sign(root2, &[&usurper]).unwrap()).unwrap(),
    );
    let ds = tempfile::tempdir().unwrap();
    refused(repo.load(ds.path()).await, "signature");
}

#[tokio::test]
async fn root_naming_the_pinned_key_and_an_attacker_key_signed_by_the_attacker_is_refused() {
    attacker_root_refused(RootAttack::ExtraKeySignedByAttacker).await;
}

#[tokio::test]
async fn root_naming_the_pinned_key_and_an_attacker_key_signed_by_both_is_refused() {
    attacker_root_refused(RootAttack::ExtraKeySignedByBoth).await;
}

#[tokio::test]
async fn root_with_threshold_two_over_two_attacker_keys_is_refused() {
    attacker_root_refused(RootAttack::TwoAttackerKeysThresholdTwo).await;
}

#[tokio::test]
async fn another_first_root_served_after_the_first_load_is_never_an_anchor() {
    let repo = Repo::new();
    repo.publish(1, &repo.targets(1, &repo.release_key), now() + DAY);
    let ds = tempfile::tempdir().unwrap();
    assert_eq!(repo.load(ds.path()).await.unwrap().len(), 1);
    // tough rewrites root.json on every load, its maps in any order: compare as JSON values.
    let stored_root = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(ds.path().join("root.json")).unwrap()).unwrap()
    };
    let stored = stored_root();
    // From now on the repository serves the attacker's metadata, first root included.
    for attack in RootAttack::ALL {
        let evil = repo.attacker(attack);
        let error = format!(
            "{:#}",
            load_folder(evil.path(), &repo.pin(), ds.path())
                .await
                .expect_err("the attacker's metadata was accepted")
        );
        assert!(error.contains("timestamp"), "{attack:?}: {error}");
        assert_eq!(stored_root(), stored, "{attack:?} moved the stored root");
    }
    // The vendor's own metadata still loads from the stored root.
    assert_eq!(repo.load(ds.path()).await.unwrap().len(), 1);
}

#[test]
fn a_root_from_another_vendor_is_refused_before_loading() {
    let repo = Repo::new();
    let other = SigningKey::generate().unwrap();
    let error = installer::tuf::check_pinned_root(&repo.root1(), &other.public_key().fingerprint())
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("is not rooted in the vendor key"),
        "{error:#}"
    );
}
