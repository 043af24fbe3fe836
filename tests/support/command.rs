//! Running the `tradeflow` example command from integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The example binary, built in this test's own target directory and profile.
///
/// Cargo sets `CARGO_BIN_EXE_*` for binaries only, and `cargo test --tests` does not
/// build examples, so the example is built here (a no-op when it is up to date).
pub fn tradeflow() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // This test runs from target/<profile>/deps/.
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps");
        let binary = profile_dir
            .join("examples")
            .join(format!("tradeflow{}", std::env::consts::EXE_SUFFIX));
        if let Some(cargo) = std::env::var_os("CARGO") {
            let mut build = Command::new(cargo);
            build
                .args(["build", "--quiet", "--example", "tradeflow"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if let Some(target_dir) = profile_dir.parent() {
                build.arg("--target-dir").arg(target_dir);
            }
            if profile_dir
                .file_name()
                .is_some_and(|name| name == "release")
            {
                build.arg("--release");
            }
            let built = build.output().expect("run cargo build");
            assert!(
                built.status.success(),
                "cargo build --example tradeflow failed:\n{}",
                String::from_utf8_lossy(&built.stderr)
            );
        }
        assert!(binary.exists(), "{} was not built", binary.display());
        binary
    })
}

/// Runs the command from the crate root.
pub fn run(args: &[&str]) -> Output {
    Command::new(tradeflow())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run tradeflow")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

pub fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8(output.stderr.clone())
        .expect("UTF-8 stderr")
        .lines()
        .map(str::to_owned)
        .collect()
}
