//! Support code shared by the black-box tests of the workspace (`tests/`, `cli/tests/`): find
//! the preload library, `kp-probe` and the `keepalive-preload` command (building them on demand
//! when cargo did not), scratch directories, and the checks for root and for tools.
//!
//! It never depends on the `keepalive-preload` crate: its exported hooks would interpose the
//! test binaries themselves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The library's file name.
pub const LIBRARY_NAME: &str = "libkeepalive_preload.so";

/// The names of every variable the library reads, in `keepalive_config::VARIABLES` order.
pub const VARIABLE_NAMES: [&str; keepalive_config::VARIABLES.len()] = {
    let mut names = [""; keepalive_config::VARIABLES.len()];
    let mut index = 0;
    while index < names.len() {
        names[index] = keepalive_config::VARIABLES[index].name;
        index += 1;
    }
    names
};

/// The profile directory of the running test (`target/<profile>`): the test executable lives
/// in `target/<profile>/deps`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable has a directory");
    if deps.file_name().is_some_and(|name| name == "deps") {
        deps.parent().expect("deps has a parent").to_owned()
    } else {
        deps.to_owned()
    }
}

/// The workspace's root directory (where its Cargo.toml is).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lies in the workspace")
}

/// A file cargo builds for the tests and how to find it.
struct Artifact {
    /// The variable that names the file; it wins over everything.
    variable: &'static str,
    /// The file's name in `target/<profile>` (or `target/<profile>/deps`).
    file: &'static str,
    /// The package that builds it.
    package: &'static str,
}

/// `variable`, else `target/<profile>/deps/<file>` (where `cargo test` puts a cdylib), else
/// `target/<profile>/<file>`, else built now with `cargo build -p <package>` into a target
/// directory of its own (the outer cargo holds the lock on the normal one).
fn find_or_build(artifact: &Artifact) -> PathBuf {
    if let Some(path) = path_from_env(artifact.variable) {
        return path;
    }
    let profile = profile_dir();
    let target = profile.join("testkit-build");
    let candidates = [
        profile.join("deps").join(artifact.file),
        profile.join(artifact.file),
    ];
    // A link made by an earlier build on demand is not trusted: building again refreshes it.
    if let Some(found) = candidates
        .iter()
        .find(|path| path.is_file() && !linked_from(path, &target))
    {
        return found.clone();
    }
    build(artifact, &profile, &target, &candidates)
}

fn build(artifact: &Artifact, profile: &Path, target: &Path, candidates: &[PathBuf]) -> PathBuf {
    let Artifact {
        variable,
        file,
        package,
        ..
    } = artifact;
    let release = profile.file_name().is_some_and(|name| name == "release");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "-p", package, "--manifest-path"])
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target);
    if release {
        cargo.arg("--release");
    }
    let status = cargo
        .status()
        .unwrap_or_else(|error| panic!("run cargo to build {package}: {error}"));
    assert!(
        status.success(),
        "{file} not found in {candidates:?} and `cargo build -p {package} --target-dir {}` failed ({status}); build it (same target dir and profile) or set {variable}",
        target.display()
    );
    let built = target
        .join(if release { "release" } else { "debug" })
        .join(file);
    assert!(
        built.is_file(),
        "`cargo build -p {package}` built no {}; set {variable}",
        built.display()
    );
    built
}

/// Whether `path` is a symbolic link into the target directory of the builds on demand.
fn linked_from(path: &Path, target: &Path) -> bool {
    std::fs::read_link(path).is_ok_and(|to| to.starts_with(target))
}

/// The file a variable names, made absolute; an empty variable counts as unset, one naming no
/// file is a failure.
fn path_from_env(variable: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(variable).filter(|value| !value.is_empty())?);
    assert!(
        path.is_file(),
        "{variable}={} is not a file",
        path.display()
    );
    Some(std::path::absolute(&path).expect("absolute path"))
}

/// The shipped preload library, canonical: `KEEPALIVE_PRELOAD_LIB`, else the release build
/// `target/release/libkeepalive_preload.so` — the artifact that ships, whose link proved it has
/// no panic path — when it is newer than every source of the library. `cargo test` cannot
/// build it (a `panic = "abort"` cdylib), so `scripts/test` builds it first; when it is
/// missing or older than the sources (a newcomer's plain `cargo test`), it is built now,
/// explicitly, with `cargo build --release -p keepalive-preload` into a target directory of
/// its own (the outer cargo holds the lock on the normal one). Never a stale library tested.
pub fn library() -> PathBuf {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            if let Some(path) = path_from_env("KEEPALIVE_PRELOAD_LIB") {
                return std::fs::canonicalize(&path).expect("canonicalize KEEPALIVE_PRELOAD_LIB");
            }
            let target = profile_dir()
                .parent()
                .expect("target/<profile> has a parent")
                .to_owned();
            let shipped = target.join("release").join(LIBRARY_NAME);
            let path = if is_fresh(&shipped) {
                shipped
            } else {
                build_release_library(&target.join("testkit-build"))
            };
            std::fs::canonicalize(&path).expect("canonicalize the library")
        })
        .clone()
}

/// Whether `library` exists and is newer than every source it is built from.
fn is_fresh(library: &Path) -> bool {
    let Ok(built) = std::fs::metadata(library).and_then(|metadata| metadata.modified()) else {
        return false;
    };
    newest_library_source().is_none_or(|(_, changed)| changed <= built)
}

/// `cargo build --release -p keepalive-preload` into `target`; the library it built.
fn build_release_library(target: &Path) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "keepalive-preload"])
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .status()
        .unwrap_or_else(|error| panic!("run cargo to build the library: {error}"));
    assert!(
        status.success(),
        "`cargo build --release -p keepalive-preload --target-dir {}` failed ({status})",
        target.display()
    );
    let built = target.join("release").join(LIBRARY_NAME);
    assert!(
        is_fresh(&built),
        "{} is missing or older than its sources after a build",
        built.display()
    );
    built
}

/// The most recently changed file the library is built from.
fn newest_library_source() -> Option<(PathBuf, std::time::SystemTime)> {
    let root = workspace_root();
    let mut files = vec![
        root.join("Cargo.toml"),
        root.join("build.rs"),
        root.join("config/Cargo.toml"),
    ];
    for dir in ["src", "config/src"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            files.extend(entries.flatten().map(|entry| entry.path()));
        }
    }
    files
        .into_iter()
        .filter_map(|file| Some((file.clone(), file.metadata().ok()?.modified().ok()?)))
        .max_by_key(|(_, changed)| *changed)
}

/// `kp-probe`: `KP_PROBE`, else `target/<profile>/kp-probe` (built by `cargo test --workspace`
/// through the probe's own tests), else built now with `cargo build -p kp-probe` into a target
/// directory of its own.
pub fn probe_path() -> PathBuf {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            find_or_build(&Artifact {
                variable: "KP_PROBE",
                file: "kp-probe",
                package: "kp-probe",
            })
        })
        .clone()
}

/// The `keepalive-preload` command: `KEEPALIVE_PRELOAD_BIN`, else
/// `target/<profile>/keepalive-preload` (built by `cargo test --workspace`), else built now with
/// `cargo build -p keepalive-preload-cli` into a target directory of its own.
pub fn command() -> PathBuf {
    static COMMAND: OnceLock<PathBuf> = OnceLock::new();
    COMMAND
        .get_or_init(|| {
            find_or_build(&Artifact {
                variable: "KEEPALIVE_PRELOAD_BIN",
                file: "keepalive-preload",
                package: "keepalive-preload-cli",
            })
        })
        .clone()
}

/// Fails (never skips) when the test is not running as root; `what` says what needs it.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root ({what}); CI runs as root, run it with sudo"
    );
}

/// Path of a program found in PATH (or the usual sbin directories), or a failure naming the
/// Debian package that provides it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found: install the Debian package {package}"))
}

/// Copies the file `from` to `to` (a program the test runs next, or a library) and gives the
/// copy `mode`. Every test copies an executable this way, never with `std::fs::copy`.
///
/// Why a `cp` child: exec fails with ETXTBSY ("Text file busy") while any process holds the
/// file open for writing. Tests run on several threads, and a child that another thread forks
/// while this process has the copy open for writing inherits that descriptor and holds it until
/// its own exec (O_CLOEXEC closes it at exec, not at fork): running the copy then fails, or a
/// wrapper (setpriv, env) exits 126 because its exec did. Writing under another name and
/// renaming does not help: the inherited descriptor is the same file. Here the one descriptor
/// open for writing is `cp`'s, in a process no test thread forks from, and it is gone when `cp`
/// has exited, before this returns; the mode is set by path (no descriptor). Compiled fixtures
/// are safe for the same reason: the linker, a child, writes them.
pub fn copy_with_mode(from: &Path, to: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let status = Command::new(tool("cp", "coreutils"))
        .arg("--")
        .arg(from)
        .arg(to)
        .status()
        .unwrap_or_else(|error| panic!("run cp: {error}"));
    assert!(
        status.success(),
        "cp {} {} failed ({status})",
        from.display(),
        to.display()
    );
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|error| panic!("chmod {}: {error}", to.display()));
}

/// A TCP port that was free a moment ago, and not returned before in this process. Taken from
/// 10000-19999, below the kernel's ephemeral range (32768-60999): an ephemeral port that a test
/// was handed could be given at once to another test's connect() or bind(0) (EADDRINUSE seen
/// under stress); a port here is only ever taken by someone asking for it. (20000-31999 and
/// 40000-49999 are the suites' fixed ports, see scripts/test.)
pub fn free_port() -> u16 {
    const FIRST: u16 = 10_000;
    const COUNT: u16 = 10_000;
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let mut next = NEXT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Each test process starts elsewhere in the range, so that two running at once rarely
    // meet; within one, ports are handed out in turn.
    let mut offset = next.unwrap_or((std::process::id() % u32::from(COUNT)) as u16);
    for _ in 0..COUNT {
        let port = FIRST + offset;
        offset = (offset + 1) % COUNT;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            *next = Some(offset);
            return port;
        }
    }
    panic!("no free TCP port in {FIRST}-{}", FIRST + COUNT - 1);
}

/// Whether the 64-bit ELF at `path` has no PT_INTERP program header: no dynamic loader, so no
/// LD_PRELOAD can reach it.
pub fn is_static(path: &Path) -> bool {
    let data = std::fs::read(path).expect("read the program");
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap()) as usize;
    let u16_at = |at: usize| usize::from(u16::from_le_bytes(data[at..at + 2].try_into().unwrap()));
    let (table, size, count) = (u64_at(32), u16_at(54), u16_at(56));
    (0..count).all(|index| {
        let at = table + index * size;
        u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) != 3
    })
}

/// A number not returned before in this process.
pub fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A path under the system temp dir that no other test (of this or another test process)
/// uses; nothing is created there.
pub fn scratch_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "keepalive-preload-test-{}-{}-{name}",
        std::process::id(),
        unique()
    ))
}

/// A scratch directory of its own (tests run in parallel), removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = scratch_path(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
