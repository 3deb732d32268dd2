//! Running the `vendor-portal` binary from its integration tests.

#![allow(dead_code, reason = "each test file uses its own subset")]

pub mod server;

use std::ffi::OsStr;
use std::process::{Command, Output};

/// Runs `vendor-portal` with `args`.
pub fn portal<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vendor-portal"))
        .args(args)
        .output()
        .unwrap()
}

/// Asserts success and returns stdout.
pub fn ok(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts a clean failure: exit 1, one `error:` line saying `says`, no panic.
pub fn assert_fails_with(out: &Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "{err:?}"
    );
    assert!(err.contains(says), "{err:?} does not say {says:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[allow(unused_imports, reason = "each test file uses its own subset")]
pub use tests::portal::copy_tree as copy_dir;
