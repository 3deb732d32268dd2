//! The pin is the anchor, and only the pin: the real `installer` against a portal (through a man
//! in the middle that serves an attacker's TUF metadata) and against air-gapped kits carrying
//! such metadata. A first root that merely lists the vendor's pinned key is an attacker's root;
//! each attack is refused with a sentence naming the pinned fingerprint, and nothing is written
//! to the AWS account, the login or the installer's datastore.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use license::SigningKey;
use serde_json::Value;
use tests::install::World;
use tests::mitm::Mitm;
use tough::schema::{Signed, Targets};

#[path = "common/attacker.rs"]
mod attacker;
use attacker::{ATTACK_RELEASE, RootAttack};

const STACK: &str = "blog";
const TUF: &str = "/tuf/acme/serverless-blog/";

/// The vendor's offline root key, from the world's key folder.
fn root_key(world: &World) -> SigningKey {
    let pem = std::fs::read_to_string(Path::new(&world.p("keys")).join("root.key")).unwrap();
    SigningKey::from_pem(&pem).unwrap()
}

/// Release 1.0.0's signed manifest, from the vendor's bundle.
fn manifest(world: &World) -> Vec<u8> {
    let mut file =
        std::io::BufReader::new(std::fs::File::open(world.p("blog-1.0.0.bundle")).unwrap());
    bundles::container::read_head(&mut file, &bundles::Limits::default())
        .unwrap()
        .manifest_bytes
}

fn get(url: &str) -> Vec<u8> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let response = reqwest::get(url).await.unwrap();
        assert!(response.status().is_success(), "{url}");
        response.bytes().await.unwrap().to_vec()
    })
}

/// The vendor's current targets, as the portal serves them.
fn portal_targets(world: &World) -> Targets {
    let base = format!("{}{TUF}", world.portal.url);
    let meta_version = |doc: &[u8], role: &str| -> u64 {
        let doc: Value = serde_json::from_slice(doc).unwrap();
        doc["signed"]["meta"][role]["version"].as_u64().unwrap()
    };
    let snapshot = meta_version(&get(&format!("{base}timestamp.json")), "snapshot.json");
    let targets = meta_version(
        &get(&format!("{base}{snapshot}.snapshot.json")),
        "targets.json",
    );
    let signed: Signed<Targets> =
        serde_json::from_slice(&get(&format!("{base}{targets}.targets.json"))).unwrap();
    signed.signed
}

fn login_through(world: &World, portal: &str) -> std::process::Output {
    world.installer(&[
        "login",
        "--portal",
        portal,
        "--license",
        &world.p("globex.lic"),
        "--trust-root",
        &world.fingerprint,
    ])
}

/// A world whose customer logged in through a man in the middle (forwarding, for now).
fn logged_in_through_a_man_in_the_middle() -> (World, Mitm) {
    let world = World::new();
    world.license("globex.lic", &[]);
    let mitm = Mitm::start(&world.portal.url);
    let out = login_through(&world, &mitm.url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (world, mitm)
}

/// `installer install --kit KIT` with the world's install key and pinned root: its JSON
/// report when `succeeds`, else its stderr (a refusal, exit 1).
fn install_kit(world: &World, kit: &Path, succeeds: bool) -> String {
    let key = world.p("install-key");
    let args = [
        "install",
        "--stack",
        STACK,
        "--kit",
        kit.to_str().unwrap(),
        "--key",
        &key,
        "--trust-root",
        &world.fingerprint,
        "--yes",
        "--output",
        "json",
    ];
    if succeeds {
        world.installer_ok(&args)
    } else {
        world.installer_err(&args)
    }
}

fn home(world: &World) -> PathBuf {
    world.dir.path().join("installer-home")
}

fn datastore(world: &World) -> PathBuf {
    home(world).join("tuf/acme/serverless-blog")
}

/// Everything in the installer's home, by path, with contents as JSON values (tough rewrites
/// `root.json` with its maps in any order), but for tough's clock marker.
fn home_files(world: &World) -> BTreeMap<String, Value> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, Value>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
                continue;
            }
            if path.ends_with("latest_known_time.json") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            out.insert(
                path.strip_prefix(base).unwrap().display().to_string(),
                value,
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(&home(world), &home(world), &mut out);
    out
}

fn refusal_names_the_pin(world: &World, stderr: &str) {
    assert!(stderr.contains(&world.fingerprint), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn login_to_a_portal_serving_an_attacker_root_is_refused() {
    let world = World::new();
    world.license("globex.lic", &[]);
    let mitm = Mitm::start(&world.portal.url);
    let (pinned, real, manifest) = (root_key(&world), portal_targets(&world), manifest(&world));
    for attack in RootAttack::ALL {
        mitm.answer_under(TUF, attacker::repository(attack, &pinned, &real, &manifest));
        let before = world.account();
        let out = login_through(&world, &mitm.url);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{attack:?} was accepted: {stderr}"
        );
        refusal_names_the_pin(&world, &stderr);
        assert!(
            home_files(&world).is_empty(),
            "{attack:?} wrote to the login"
        );
        assert_eq!(world.account(), before);
    }
}

#[test]
fn a_portal_serving_another_first_root_after_login_is_refused() {
    let (world, mitm) = logged_in_through_a_man_in_the_middle();
    let logged_in = home_files(&world);
    assert!(datastore(&world).join("root.json").is_file());
    let (pinned, real, manifest) = (root_key(&world), portal_targets(&world), manifest(&world));
    for attack in RootAttack::ALL {
        // From now on the portal serves the attacker's first root and metadata (higher
        // versions than any this machine has seen), with an attacker's release 9.9.9.
        mitm.answer_under(TUF, attacker::repository(attack, &pinned, &real, &manifest));
        let before = world.account();
        let stderr = world.installer_err(&["versions"]);
        assert!(stderr.contains("timestamp"), "{attack:?}: {stderr}");
        assert!(!stderr.contains(ATTACK_RELEASE), "{stderr}");
        for version in ["1.0.0", ATTACK_RELEASE] {
            let stderr =
                world.installer_err(&["install", "--stack", STACK, "--version", version, "--yes"]);
            assert!(stderr.contains("refused"), "{attack:?}: {stderr}");
        }
        assert_eq!(world.account(), before);
        assert_eq!(
            home_files(&world),
            logged_in,
            "{attack:?} changed the login"
        );
    }
}

/// Rewrites `kit` into `out` with its TUF metadata and targets replaced by `files`.
fn with_tuf(kit: &Path, out: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let mut archive = tar::Archive::new(std::fs::File::open(kit).unwrap());
    let mut builder = tar::Builder::new(std::fs::File::create(out).unwrap());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes).unwrap();
    };
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name.starts_with("tuf/") {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        add(&name, &bytes);
    }
    for (name, bytes) in files {
        let name = match name.strip_prefix("targets/") {
            Some(target) => format!("tuf/targets/{target}"),
            None => format!("tuf/metadata/{name}"),
        };
        add(&name, bytes);
    }
    builder.finish().unwrap();
}

/// The kit's newest signed targets.
fn kit_targets(kit: &Path) -> Targets {
    let mut archive = tar::Archive::new(std::fs::File::open(kit).unwrap());
    let mut newest: Option<Signed<Targets>> = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name.starts_with("tuf/metadata/") && name.ends_with(".targets.json") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            let targets: Signed<Targets> = serde_json::from_slice(&bytes).unwrap();
            if newest
                .as_ref()
                .is_none_or(|n| n.signed.version < targets.signed.version)
            {
                newest = Some(targets);
            }
        }
    }
    newest.unwrap().signed
}

#[test]
fn kit_carrying_an_attacker_root_is_refused() {
    let world = World::new();
    world.license("globex.lic", &[]);
    let kit = world.export_kit("1.0.0", "blog.kit");
    let (pinned, real, manifest) = (root_key(&world), kit_targets(&kit), manifest(&world));
    for attack in RootAttack::ALL {
        let evil = PathBuf::from(world.p("evil.kit"));
        with_tuf(
            &kit,
            &evil,
            &attacker::repository(attack, &pinned, &real, &manifest),
        );
        let before = world.account();
        let stderr = install_kit(&world, &evil, false);
        refusal_names_the_pin(&world, &stderr);
        assert_eq!(world.account(), before, "{attack:?} changed the account");
        assert!(
            !datastore(&world).exists(),
            "{attack:?} reached the datastore"
        );
    }
    // The vendor's own kit still installs.
    let done: Value = serde_json::from_str(&install_kit(&world, &kit, true)).unwrap();
    assert_eq!(done["version"], "1.0.0", "{done}");
}

#[test]
fn kit_whose_manifest_signature_does_not_verify_is_refused() {
    let world = World::new();
    world.license("globex.lic", &[]);
    world.export_kit("1.0.0", "blog.kit");
    // The TUF metadata pins the manifest's digest, not its signature block: change the
    // signature inside the kit's bundle and nothing else.
    let mut file =
        std::io::BufReader::new(std::fs::File::open(world.p("blog-1.0.0.bundle")).unwrap());
    let head = bundles::container::read_head(&mut file, &bundles::Limits::default()).unwrap();
    let mut kit = std::fs::read(world.p("blog.kit")).unwrap();
    let at = kit
        .windows(64)
        .position(|w| w == head.signature.signature)
        .expect("the kit carries the bundle's signature");
    kit[at + 10] ^= 0x01;
    std::fs::write(world.p("resigned.kit"), kit).unwrap();
    let before = world.account();
    let stderr = install_kit(&world, Path::new(&world.p("resigned.kit")), false);
    assert!(stderr.contains("does not verify"), "{stderr}");
    assert!(stderr.contains("release key"), "{stderr}");
    assert_eq!(world.account(), before);
}

#[test]
fn manifest_signature_not_by_a_release_key_is_refused() {
    let (world, mitm) = logged_in_through_a_man_in_the_middle();
    // A compromised portal answers grants with a signature by a key of its own (here: the
    // vendor's license-signing key id, a key in the keyset that is not a release key, and then
    // a release key id with the attacker's signature).
    let attacker = SigningKey::generate().unwrap();
    let message = {
        let mut m = bundles::manifest::SIGNING_PREFIX.to_vec();
        m.extend_from_slice(&manifest(&world));
        m
    };
    let forged = base64::engine::general_purpose::STANDARD.encode(attacker.sign(&message));
    let keyset: Value = serde_json::from_slice(
        &std::fs::read(Path::new(&world.p("keys")).join("keyset.json")).unwrap(),
    )
    .unwrap();
    let kid = |list: &str| {
        keyset["signed"][list][0]["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for (kid, says) in [
        (kid("license_keys"), "not a release key"),
        (kid("release_keys"), "does not verify"),
    ] {
        let forged = forged.clone();
        mitm.rewrite("/api/v1/grants", move |body| {
            let mut grant: Value = serde_json::from_slice(body).unwrap();
            grant["manifest_signature"] = serde_json::json!({"kid": kid, "signature": forged});
            serde_json::to_vec(&grant).unwrap()
        });
        let before = world.account();
        let stderr =
            world.installer_err(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
        assert!(stderr.contains(says), "{stderr}");
        assert!(stderr.contains("release key"), "{stderr}");
        assert_eq!(world.account(), before);
    }
}

/// Attack: a man in the middle (or a compromised portal) answers the installation's registration
/// with a status the vendor's license key did not sign. The installer checks it under the pinned
/// keyset before the account changes, and refuses.
#[test]
fn forged_status_in_the_installation_registration_is_refused() {
    let (world, mitm) = logged_in_through_a_man_in_the_middle();
    mitm.rewrite("/api/v1/installations", |body| {
        let mut answer: Value = serde_json::from_slice(body).unwrap();
        let status = answer["status"].as_str().unwrap().to_owned();
        // Flip the signature's first character: a status no key of the vendor signed.
        let (head, signature) = status.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
        answer["status"] = Value::from(format!("{head}.{flipped}{}", &signature[1..]));
        serde_json::to_vec(&answer).unwrap()
    });
    let before = world.account();
    let stderr = world.installer_err(&["install", "--stack", STACK, "--version", "1.0.0", "--yes"]);
    assert!(
        stderr.contains("does not verify under the pinned keyset"),
        "{stderr}"
    );
    assert_eq!(
        world.account(),
        before,
        "a refused registration changed the account"
    );
}
