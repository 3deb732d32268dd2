//! `download-bench`: object download throughput through the portal beside a plain static-file
//! server on the same machine, in the same run. Both are separate processes reading the same
//! file from the same disk; the static server is the least a file server can do (axum, a tokio
//! file, 256 KiB reads), the portal adds the license check, the database lookup and its
//! middleware. The goal is at least 80% of the baseline's throughput.
//!
//! ```text
//! cargo build --release --workspace && target/release/download-bench [--mib 1024] [--rounds 5]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::process::ExitCode;

use tests::bench::BenchArgs;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use futures_util::StreamExt as _;
use tests::portal::{PortalSetup, memory, publish_big_release};

/// The baseline: serve one file at `/file` and print the address.
fn serve_file(path: String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let app = axum::Router::new().route(
            "/file",
            axum::routing::get(move || {
                let path = path.clone();
                async move {
                    let file = tokio::fs::File::open(path).await.unwrap();
                    let len = file.metadata().await.unwrap().len();
                    let body = axum::body::Body::from_stream(
                        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024),
                    );
                    (
                        [(axum::http::header::CONTENT_LENGTH, len.to_string())],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("http://{}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

async fn download(http: &reqwest::Client, url: &str, license: Option<&str>) -> (u64, f64) {
    let mut request = http.get(url);
    if let Some(license) = license {
        request = request.header("authorization", format!("License {license}"));
    }
    let started = Instant::now();
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let mut stream = response.bytes_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len() as u64;
    }
    (bytes, started.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn run(args: &BenchArgs) {
    let mib = args.number("--mib", 1024, 8);
    let rounds = args.number("--rounds", 5, 1) as usize;
    let dir = tempfile::tempdir().unwrap();
    let setup = PortalSetup::new(dir.path(), false);
    let token = setup.create_vendor("acme");
    let portal = setup.start();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    eprintln!("publishing a release with a {mib} MiB object…");
    let release = publish_big_release(&setup, &portal.url, &token, &work, mib << 20);

    let mut baseline = Command::new(std::env::current_exe().unwrap())
        .args([
            "--serve-file",
            release
                .blob
                .as_ref()
                .expect("a local blob store")
                .to_str()
                .unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(baseline.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let baseline_url = format!("{}/file", line.trim());
    let portal_url = format!(
        "{}/api/v1/vendors/acme/objects/{}",
        portal.url, release.digest
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let (mut plain, mut through) = (Vec::new(), Vec::new());
    rt.block_on(async {
        // One warm-up of each: the page cache then holds the file for both.
        download(&http, &baseline_url, None).await;
        download(&http, &portal_url, Some(&release.license)).await;
        for _ in 0..rounds {
            let (bytes, secs) = download(&http, &baseline_url, None).await;
            assert_eq!(bytes, release.size);
            plain.push(bytes as f64 / secs / 1e6);
            let (bytes, secs) = download(&http, &portal_url, Some(&release.license)).await;
            assert_eq!(bytes, release.size);
            through.push(bytes as f64 / secs / 1e6);
        }
    });
    let _ = baseline.kill();
    let _ = baseline.wait();
    let (plain, through) = (median(plain), median(through));
    let (_, peak) = memory(portal.pid());
    println!("object: {} bytes, {rounds} rounds, medians", release.size);
    println!("  static-file baseline   {plain:>8.0} MB/s");
    println!("  portal (licensed)      {through:>8.0} MB/s");
    println!(
        "  ratio                  {:>8.2}  (goal: at least 0.80)",
        through / plain
    );
    println!(
        "  portal peak memory     {:>8.1} MiB (VmHWM, after pushing and serving it)",
        peak as f64 / 1_048_576.0
    );
}

fn main() -> ExitCode {
    // The baseline's file server is this binary again, started with --serve-file.
    let raw: Vec<String> = std::env::args().collect();
    if let Some(path) = raw
        .iter()
        .position(|a| a == "--serve-file")
        .and_then(|i| raw.get(i + 1))
    {
        serve_file(path.clone());
        return ExitCode::SUCCESS;
    }
    tests::bench::main(
        "download-bench",
        "a large object from the portal against a plain file server on the same machine",
        &[
            "--mib N    object size in MiB (1024)",
            "--rounds N    rounds (5)",
        ],
        run,
    )
}
