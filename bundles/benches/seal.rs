//! Sealing and opening one large object (1 GiB by default), each beside baselines measured in
//! the same run on one core: bare SHA-256 and bare AES-256-GCM over the same bytes, their
//! composition (the floor for a format that must hash and encrypt every byte), and `age` (from
//! Debian) on the same file. Peak memory is read from a child process's VmHWM, for two object
//! sizes, to show it does not grow with the object.
//!
//! `cargo bench -p bundles --bench seal` (CONSIGN_BENCH_MIB=… to change the size).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark with a broken fixture should stop loudly"
)]

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bundles::Digest;
use bundles::seal::{self, DataKey};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const BUF: usize = 1024 * 1024;

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn write_input(path: &Path, bytes: u64) {
    let mut block = vec![0u8; BUF];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut out = BufWriter::new(File::create(path).unwrap());
    for _ in 0..bytes / BUF as u64 {
        out.write_all(&block).unwrap();
    }
    out.flush().unwrap();
}

fn seal_file(input: &Path, output: &Path, key: &DataKey) -> Digest {
    let (digest, size) =
        Digest::of_reader(BufReader::with_capacity(BUF, File::open(input).unwrap())).unwrap();
    let mut out = BufWriter::with_capacity(BUF, File::create(output).unwrap());
    seal::seal(
        key,
        &digest,
        size,
        BufReader::with_capacity(BUF, File::open(input).unwrap()),
        &mut out,
    )
    .unwrap();
    out.flush().unwrap();
    digest
}

fn seal_to_sink(input: &Path, key: &DataKey) -> Digest {
    let (digest, size) =
        Digest::of_reader(BufReader::with_capacity(BUF, File::open(input).unwrap())).unwrap();
    seal::seal(
        key,
        &digest,
        size,
        BufReader::with_capacity(BUF, File::open(input).unwrap()),
        std::io::sink(),
    )
    .unwrap();
    digest
}

fn open_to_sink(input: &Path, key: &DataKey, digest: &Digest, size: u64) {
    let reader = BufReader::with_capacity(BUF, File::open(input).unwrap());
    seal::open(key, "bench", digest, size, reader, std::io::sink()).unwrap();
}

fn open_file(input: &Path, output: &Path, key: &DataKey, digest: &Digest, size: u64) {
    let mut out = BufWriter::with_capacity(BUF, File::create(output).unwrap());
    let reader = BufReader::with_capacity(BUF, File::open(input).unwrap());
    seal::open(key, "bench", digest, size, reader, &mut out).unwrap();
    out.flush().unwrap();
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// In a child process: seal then open `mib` MiB, print the peak resident memory.
fn child(dir: &Path, mib: u64) {
    let input = dir.join(format!("child-{mib}.in"));
    write_input(&input, mib * BUF as u64);
    let key = DataKey::generate().unwrap();
    let sealed = dir.join(format!("child-{mib}.sealed"));
    let digest = seal_file(&input, &sealed, &key);
    open_file(
        &sealed,
        &dir.join(format!("child-{mib}.out")),
        &key,
        &digest,
        mib * BUF as u64,
    );
    println!("{}", peak_rss_kib());
}

fn peak_memory(dir: &Path, mib: u64) -> u64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("CONSIGN_BENCH_CHILD", mib.to_string())
        .env("CONSIGN_BENCH_DIR", dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn age(args: &[&str]) -> bool {
    Command::new("age")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn main() {
    if let (Ok(mib), Ok(dir)) = (
        std::env::var("CONSIGN_BENCH_CHILD"),
        std::env::var("CONSIGN_BENCH_DIR"),
    ) {
        child(Path::new(&dir), mib.parse().unwrap());
        return;
    }
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` compiles this; nothing to run quickly
    }
    let mib: u64 = std::env::var("CONSIGN_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let bytes = mib * BUF as u64;
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().to_owned();
    let input = dir.join("object.bin");
    write_input(&input, bytes);
    println!("object: {mib} MiB in {}", dir.display());

    // Baselines on the same bytes: SHA-256 over the file, AES-256-GCM over 64 KiB chunks.
    let sha = best_of(3, || {
        Digest::of_reader(BufReader::with_capacity(BUF, File::open(&input).unwrap())).unwrap()
    });
    let aes_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    let aes = best_of(3, || {
        let mut reader = BufReader::with_capacity(BUF, File::open(&input).unwrap());
        let mut chunk = vec![0u8; 64 * 1024];
        let mut counter = 0u64;
        loop {
            let n = reader.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&counter.to_be_bytes());
            counter += 1;
            let _ = aes_key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut chunk[..n],
                )
                .unwrap();
        }
    });
    let floor = 1.0 / (1.0 / gbps(bytes, sha) + 1.0 / gbps(bytes, aes));

    let key = DataKey::generate().unwrap();
    let sealed = dir.join("object.sealed");
    let digest = seal_file(&input, &sealed, &key);
    let opened = dir.join("object.opened");
    // Compute throughput: input from the page cache, output discarded.
    let seal_time = best_of(3, || seal_to_sink(&input, &key));
    let open_time = best_of(3, || open_to_sink(&sealed, &key, &digest, bytes));
    // End to end: into a new file (on this VM, ext4 allocates new files at about 0.8 GB/s).
    let seal_file_time = best_of(1, || seal_file(&input, &dir.join("object.sealed2"), &key));
    let open_file_time = best_of(1, || open_file(&sealed, &opened, &key, &digest, bytes));

    println!();
    println!("one core, {mib} MiB object, input in the page cache (best of 3)");
    println!(
        "  SHA-256 alone           {:>6.2} GB/s   (baseline)",
        gbps(bytes, sha)
    );
    println!(
        "  AES-256-GCM alone       {:>6.2} GB/s   (baseline)",
        gbps(bytes, aes)
    );
    println!(
        "  hash + encrypt floor    {:>6.2} GB/s   (1 / (1/SHA + 1/AES): every byte must be hashed and encrypted)",
        floor
    );
    let verdict = |v: f64, goal: f64| if v >= goal { "met" } else { "NOT met" };
    let (s, o) = (gbps(bytes, seal_time), gbps(bytes, open_time));
    println!(
        "  seal                    {s:>6.2} GB/s   {:.2}× floor, {:.2}× SHA-256 (goal ≥ 1.0 GB/s: {})",
        s / floor,
        s / gbps(bytes, sha),
        verdict(s, 1.0)
    );
    println!(
        "  open                    {o:>6.2} GB/s   {:.2}× floor, {:.2}× SHA-256 (goal ≥ 1.2 GB/s: {})",
        o / floor,
        o / gbps(bytes, sha),
        verdict(o, 1.2)
    );
    println!(
        "  seal, into a new file   {:>6.2} GB/s   open, into a new file {:.2} GB/s",
        gbps(bytes, seal_file_time),
        gbps(bytes, open_file_time)
    );

    let identity = dir.join("age.key");
    let recipient = Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            text.split_whitespace().last().map(str::to_owned)
        });
    match recipient {
        Some(recipient) if recipient.starts_with("age1") => {
            let aged = dir.join("object.age");
            let (i, a, id) = (
                input.to_str().unwrap(),
                aged.to_str().unwrap(),
                identity.to_str().unwrap(),
            );
            assert!(age(&["-e", "-r", &recipient, "-o", a, i]));
            let enc = best_of(3, || {
                assert!(age(&["-e", "-r", &recipient, "-o", "/dev/null", i]))
            });
            let dec = best_of(3, || assert!(age(&["-d", "-i", id, "-o", "/dev/null", a])));
            let (ae, ad) = (gbps(bytes, enc), gbps(bytes, dec));
            println!(
                "  age 1.1 -e (same file)  {ae:>6.2} GB/s   seal is {:.2}× faster (goal ≥ 2×: {})",
                s / ae,
                verdict(s / ae, 2.0)
            );
            println!(
                "  age 1.1 -d (same file)  {ad:>6.2} GB/s   open is {:.2}× faster (goal ≥ 2×: {})",
                o / ad,
                verdict(o / ad, 2.0)
            );
        }
        _ => println!(
            "  age                     not installed (apt-get install age) — comparison skipped"
        ),
    }

    let small = peak_memory(&dir, 16);
    let large = peak_memory(&dir, mib);
    println!(
        "  peak memory             {:.1} MiB for 16 MiB, {:.1} MiB for {mib} MiB (goal ≤ 64 MiB: {})",
        small as f64 / 1024.0,
        large as f64 / 1024.0,
        verdict(64.0, large as f64 / 1024.0)
    );
}
