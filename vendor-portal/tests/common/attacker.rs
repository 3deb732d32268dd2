//! An attacker's TUF repository for the root-pinning attacks: a first root that names the
//! vendor's pinned key beside keys of the attacker's own, and targets, snapshot and timestamp
//! re-signed with the attacker's key, listing the vendor's releases plus a `9.9.9` of the
//! attacker's. A client that accepts such a root lets the attacker decide every release.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use bundles::release::target_name;
use license::SigningKey;
use tough::TargetName;
use tough::schema::{RoleType, Signed, Targets};
use vendor_portal::tuf;

/// The ways a first root can name the pinned key and still belong to the attacker.
#[derive(Clone, Copy, Debug)]
pub enum RootAttack {
    /// The root role is the pinned key plus an attacker key, threshold 1, signed by the
    /// attacker alone.
    ExtraKeySignedByAttacker,
    /// The same root, signed by the attacker and by the pinned key (a vendor tricked into
    /// signing it, or a signature carried over).
    ExtraKeySignedByBoth,
    /// The root role is the pinned key plus two attacker keys, threshold 2, signed by both
    /// attacker keys.
    TwoAttackerKeysThresholdTwo,
}

impl RootAttack {
    /// Every attack.
    pub const ALL: [Self; 3] = [
        Self::ExtraKeySignedByAttacker,
        Self::ExtraKeySignedByBoth,
        Self::TwoAttackerKeysThresholdTwo,
    ];
}

/// The version the attacker's targets, snapshot and timestamp claim: above any real one, so a
/// client that trusts the attacker's root also accepts them over what it has seen.
pub const ATTACK_VERSION: u64 = 1000;

/// The attacker's version of the app.
pub const ATTACK_RELEASE: &str = "9.9.9";

/// The attacker's repository files, by path relative to the metadata folder (targets under
/// `targets/`): `1.root.json`, `timestamp.json`, `N.snapshot.json`, `N.targets.json` and the
/// target files. `pinned` is the vendor's root key (its signature is used only by
/// [`RootAttack::ExtraKeySignedByBoth`]); `real` are the vendor's targets, whose releases the
/// attacker keeps, and `manifest` a release manifest's bytes, served for every target.
pub fn repository(
    attack: RootAttack,
    pinned: &SigningKey,
    real: &Targets,
    manifest: &[u8],
) -> BTreeMap<String, Vec<u8>> {
    let now = license::UnixTime::now().as_secs() as i64;
    let attacker = SigningKey::generate().unwrap();
    let second = SigningKey::generate().unwrap();
    let (pinned_pub, attacker_pub, second_pub) = (
        pinned.public_key(),
        attacker.public_key(),
        second.public_key(),
    );
    let mut root_keys = vec![&pinned_pub, &attacker_pub];
    if matches!(attack, RootAttack::TwoAttackerKeysThresholdTwo) {
        root_keys.push(&second_pub);
    }
    let mut root = tuf::root(
        1,
        now + 365 * 86_400,
        &tuf::RootKeys {
            root: root_keys,
            targets: vec![&attacker_pub],
            online: &attacker_pub,
        },
    )
    .unwrap();
    let signers: Vec<&SigningKey> = match attack {
        RootAttack::ExtraKeySignedByAttacker => vec![&attacker],
        RootAttack::ExtraKeySignedByBoth => vec![&attacker, pinned],
        RootAttack::TwoAttackerKeysThresholdTwo => {
            root.roles.get_mut(&RoleType::Root).unwrap().threshold = NonZeroU64::new(2).unwrap();
            vec![&attacker, &second]
        }
    };
    let mut files = BTreeMap::new();
    files.insert(
        "1.root.json".to_owned(),
        tuf::to_bytes(&tuf::sign(root, &signers).unwrap()).unwrap(),
    );

    // Targets: the vendor's releases, every one pointing at `manifest`, plus the attacker's.
    let digest = bundles::Digest::of(manifest);
    let mut targets = real.clone();
    targets.version = NonZeroU64::new(ATTACK_VERSION).unwrap();
    targets.expires = tuf::timestamp(now + 365 * 86_400).unwrap();
    let (name, template) = targets
        .targets
        .iter()
        .next()
        .map(|(n, t)| (n.clone(), t.clone()))
        .unwrap();
    let mut release = tuf::release_of(&template).unwrap();
    release.version = semver::Version::parse(ATTACK_RELEASE).unwrap();
    release.manifest = digest;
    let forged = target_name(release.app.as_str(), &release.version);
    targets.targets.insert(
        TargetName::new(forged.clone()).unwrap(),
        tuf::target(manifest.len() as u64, &release).unwrap(),
    );
    for target_file in [name.raw().to_owned(), forged] {
        files.insert(
            format!("targets/{}.{target_file}", digest.hex()),
            manifest.to_vec(),
        );
    }
    for target in targets.targets.values_mut() {
        target.length = manifest.len() as u64;
        target.hashes.sha256 = digest.bytes().to_vec().into();
    }
    let signed_targets: Signed<Targets> = tuf::sign(targets, &[&attacker]).unwrap();
    files.insert(
        format!("{ATTACK_VERSION}.targets.json"),
        tuf::to_bytes(&signed_targets).unwrap(),
    );
    let snapshot = tuf::sign(
        tuf::snapshot(ATTACK_VERSION, now + 7 * 86_400, ATTACK_VERSION).unwrap(),
        &[&attacker],
    )
    .unwrap();
    let snapshot = tuf::to_bytes(&snapshot).unwrap();
    let timestamp = tuf::sign(
        tuf::timestamp_role(ATTACK_VERSION, now + 86_400, ATTACK_VERSION, &snapshot).unwrap(),
        &[&attacker],
    )
    .unwrap();
    files.insert(format!("{ATTACK_VERSION}.snapshot.json"), snapshot);
    files.insert(
        "timestamp.json".to_owned(),
        tuf::to_bytes(&timestamp).unwrap(),
    );
    files
}
