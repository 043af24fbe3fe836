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
    BINARY.get_or_init(|| example("tradeflow"))
}

/// The example `name`, built as [`tradeflow`] is (each call asks cargo; a no-op when it
/// is up to date).
pub fn example(name: &str) -> PathBuf {
    // This test runs from target/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "--example", name])
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
            "cargo build --example {name} failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
    }
    assert!(binary.exists(), "{} was not built", binary.display());
    binary
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

/// The command, ready to be given arguments and spawned from the crate root (for tests
/// that watch or kill it while it runs).
pub fn command() -> Command {
    let mut command = Command::new(tradeflow());
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// A new, empty directory for one test's files, under Cargo's temporary directory for
/// integration tests (`target/tmp/NAME-PID`: test processes running at once do not
/// share it). Removed when dropped, unless the test is failing (to look at).
pub fn scratch_dir(name: &str) -> ScratchDir {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => panic!("cannot clear {}: {error}", dir.display()),
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    ScratchDir(dir)
}

/// A directory from [`scratch_dir`]: derefs to its path.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The complete lines of a JSON-lines file, parsed; none when the file does not exist
/// yet. A last line without its newline is being written: it is left out.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => panic!("cannot read {}: {error}", path.display()),
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("{}: {error}: {line:?}", path.display()))
        })
        .collect()
}

/// Asserts that `output` exited with `code`, showing stdout and stderr otherwise.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr_lines(output).join("\n")
    );
}

/// `path` as text.
pub fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Writes `value` as JSON to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, value: &serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).expect("write a test file");
    text(&path).to_owned()
}

/// Spawns `command` with stdout discarded and stderr written to `stderr_path`, asks
/// `kill_now` every 2 ms (with the stderr written so far) whether to kill it, and then
/// kills it with SIGKILL and reaps it, checking that the signal ended it. Panics when the
/// process ends before, or when the kill point has not come after 30 s.
#[cfg(unix)]
pub fn kill_when(mut command: Command, stderr_path: &Path, mut kill_now: impl FnMut(&str) -> bool) {
    let stderr = std::fs::File::create(stderr_path).expect("create the stderr file");
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn tradeflow");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let progress = std::fs::read_to_string(stderr_path).unwrap_or_default();
        if kill_now(&progress) {
            break;
        }
        if let Some(status) = child.try_wait().expect("poll the child") {
            panic!("the process ended ({status}) before the kill point:\n{progress}");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the kill point never came:\n{progress}");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL the process");
    let status = child.wait().expect("reap the process");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL, not ended: {status}"
    );
}
