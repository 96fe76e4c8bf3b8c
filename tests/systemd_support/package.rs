//! The project's `.deb` and its installation in the container with `dpkg -i`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{Container, repo, tail};

/// The project's .deb: `KP_TEST_DEB` (scripts/test builds it with
/// packaging/build-deb first), else built now by packaging/build-deb into a target directory
/// of its own (the outer cargo holds the lock on the normal one): a full release build.
pub fn deb() -> PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        if let Some(path) = std::env::var_os("KP_TEST_DEB").filter(|v| !v.is_empty()) {
            let path = std::path::absolute(PathBuf::from(path)).expect("absolute path");
            assert!(
                path.is_file(),
                "KP_TEST_DEB={} is not a file",
                path.display()
            );
            return path;
        }
        let target = testkit::profile_dir().join("kpsd-deb-build");
        let output = target.join("debian");
        println!(
            "KP_TEST_DEB is not set: packaging/build-deb into {}",
            target.display()
        );
        let out = Command::new(repo().join("packaging/build-deb"))
            .arg("--output")
            .arg(&output)
            .env("CARGO_TARGET_DIR", &target)
            .stdin(Stdio::null())
            .output()
            .expect("run packaging/build-deb");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "packaging/build-deb failed ({}):\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        );
        let path = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
        assert!(path.is_file(), "packaging/build-deb printed {stdout:?}");
        path
    })
    .clone()
}

impl Container {
    /// Copies the project's .deb in and installs it with `dpkg -i`.
    pub fn install_package(&self) {
        let deb = deb();
        let bytes = std::fs::read(&deb).unwrap_or_else(|e| panic!("read {}: {e}", deb.display()));
        self.write("/root/keepalive-preload.deb", &bytes);
        self.sh("dpkg -i /root/keepalive-preload.deb");
        println!("{}: dpkg -i {}", self.name, deb.display());
    }
}
