//! `install-bench`: the installer's wall time to install the reference app into a fresh moto
//! account, beside `aws cloudformation package` + `aws cloudformation deploy` (awscli from PyPI,
//! pinned in `scripts/requirements-test.txt`) deploying the same template and the same function
//! zips into a fresh moto account, in the same run. The goal is at most half the baseline's time.
//!
//! The installer's time includes everything it does: STS, TUF metadata, the key grant, the
//! download and decryption of every object, the artifact bucket's creation, uploads, the license
//! parameter, the change set, the static asset and the history. The baseline's bucket is
//! created before its clock starts, and it uploads no static asset: what it does is a subset.
//!
//! ```text
//! cargo build --release --workspace && target/release/install-bench [--rounds 5]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::process::ExitCode;

use tests::bench::BenchArgs;

use std::process::Command;
use std::time::{Duration, Instant};

use tests::install::{REGION, World};
use tests::moto::venv_python;

fn reset(world: &World) {
    let (status, body) = world
        .moto
        .request("POST", "/moto-api/reset", &[], "")
        .unwrap();
    assert!((200..300).contains(&status), "{body}");
    let (status, body) = world
        .moto
        .request(
            "POST",
            "/moto-api/config",
            &[("Content-Type", "application/json")],
            r#"{"lambda":{"use_docker":false}}"#,
        )
        .unwrap();
    assert!((200..300).contains(&status), "{body}");
}

fn aws(world: &World, args: &[&str]) -> Command {
    let mut cmd = Command::new(venv_python().with_file_name("aws"));
    cmd.args(args)
        .args(["--endpoint-url", &world.moto.endpoint(), "--region", REGION])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_ENDPOINT_URL", world.moto.endpoint())
        .env("AWS_CONFIG_FILE", world.dir.path().join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            world.dir.path().join("no-aws-credentials"),
        )
        .current_dir(world.dir.path().join("opened"));
    cmd
}

fn check(mut cmd: Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn run(args: &BenchArgs) {
    tests::bench::require_moto();
    let rounds = args.number("--rounds", 5, 1) as usize;
    let world = World::new();
    world.license("globex.lic", &[]);
    world.login("globex.lic");

    // The baseline's inputs: the same release, opened, with each function's code given as the
    // local zip that `aws cloudformation package` uploads (Python keeps the template's order).
    world.vendor(&[
        "release",
        "open",
        &world.p("blog-1.0.0.bundle"),
        "--keys",
        &world.p("blog-1.0.0.bundle.keys"),
        "-o",
        &world.p("opened"),
    ]);
    let rewrite = r#"
import json, sys
t = json.load(open("template.json"))
code = {"PostsCodeKey": "functions/posts.zip", "UsersCodeKey": "functions/users.zip",
        "SiteCodeKey": "functions/site.zip"}
for r in t["Resources"].values():
    if r["Type"] == "AWS::Lambda::Function":
        r["Properties"]["Code"] = code[r["Properties"]["Code"]["S3Key"]["Ref"]]
for p in code:
    del t["Parameters"][p]
json.dump(t, open("package.json", "w"), indent=1)
"#;
    let mut python = Command::new(venv_python());
    python
        .args(["-c", rewrite])
        .current_dir(world.dir.path().join("opened"));
    check(python);

    println!("round  installer  awscli package+deploy");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // Round 0 warms up moto (it imports each service's backend on first use) and is not counted.
    for round in 0..=rounds {
        reset(&world);
        let started = Instant::now();
        let out = world
            .installer_command(&[
                "install",
                "--stack",
                "bench",
                "--version",
                "1.0.0",
                "--yes",
                "--output",
                "json",
            ])
            .output()
            .unwrap();
        let installer = started.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        reset(&world);
        check(aws(&world, &["s3", "mb", "s3://bench-artifacts"]));
        let started = Instant::now();
        check(aws(
            &world,
            &[
                "cloudformation",
                "package",
                "--template-file",
                "package.json",
                "--s3-bucket",
                "bench-artifacts",
                "--output-template-file",
                "packaged.json",
            ],
        ));
        check(aws(
            &world,
            &[
                "cloudformation",
                "deploy",
                "--template-file",
                "packaged.json",
                "--stack-name",
                "bench",
                "--capabilities",
                "CAPABILITY_IAM",
                "--parameter-overrides",
                "ArtifactBucket=bench-artifacts",
                "AppVersion=1.0.0",
            ],
        ));
        let awscli = started.elapsed();
        println!(
            "{:>5}  {:>7.3} s  {:>7.3} s",
            if round == 0 {
                "warm".to_owned()
            } else {
                round.to_string()
            },
            installer.as_secs_f64(),
            awscli.as_secs_f64()
        );
        if round == 0 {
            continue;
        }
        ours.push(installer);
        theirs.push(awscli);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!(
        "median {:>7.3} s  {:>7.3} s   installer / awscli = {:.2} (goal: at most 0.50)",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}

fn main() -> ExitCode {
    tests::bench::main(
        "install-bench",
        "the installer installing the reference app into a fresh moto account, against awscli package + deploy of the same template",
        &["--rounds N    rounds after a warm-up (5)"],
        run,
    )
}
