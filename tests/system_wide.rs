//! A system-wide install: the library listed in /etc/ld.so.preload, so that every process
//! loads it. The test never touches the machine's /etc: it runs in a private mount namespace
//! where /etc is an overlay (upper layer on a tmpfs) holding its own ld.so.preload.
//!
//! - KEEPALIVE_PROGRAMS restricts it to the listed program; every other program loads the
//!   library and does nothing.
//! - A program with a file capability run by user nobody (secure execution) loads it from
//!   ld.so.preload too (that path is trusted) and it does nothing there.
//!
//! Needs root (mount namespace, overlay, setcap): fails, never skips, without it.

mod common;

use common::*;

/// Runs `script` with sh in a new mount namespace whose /etc/ld.so.preload lists the library.
/// `$1` is the library, `$2` the scratch directory.
fn in_system_wide_namespace(scratch: &TempDir, vars: &[(&str, &str)], script: &str) -> Output {
    require_root("mount namespace with an overlay on /etc");
    let mounts = scratch.path("mounts");
    std::fs::create_dir_all(&mounts).expect("create mount point");
    let setup = "mount -t tmpfs tmpfs \"$2/mounts\" && mkdir \"$2/mounts/upper\" \"$2/mounts/work\" && \
                 mount -t overlay overlay -o \"lowerdir=/etc,upperdir=$2/mounts/upper,workdir=$2/mounts/work\" /etc && \
                 echo \"$1\" > /etc/ld.so.preload && ";
    Run::new(
        tool("unshare", "util-linux"),
        &["-m", "--propagation", "private", "sh", "-c"],
    )
    .arg(format!("{setup}{script}"))
    .arg("sh")
    .arg(library())
    .arg(&scratch.0)
    .envs(vars)
    .run()
}

#[test]
#[ignore = "needs root: writes /etc/ld.so.preload in a mount namespace; scripts/test runs it"]
fn programs_filter_in_a_system_wide_install() {
    let scratch = TempDir::new("system-wide");
    let listed = scratch.path("kp-probe");
    let unlisted = scratch.path("other-program");
    copy_with_mode(&probe_path(), &listed, 0o755);
    copy_with_mode(&probe_path(), &unlisted, 0o755);
    let mut vars = TIMINGS.to_vec();
    vars.push(("KEEPALIVE_PROGRAMS", "kp-probe,redis-server"));
    let script = format!(
        "{} report tcp4 + maps && {} report tcp4 + maps",
        listed.display(),
        unlisted.display()
    );
    let out = in_system_wide_namespace(&scratch, &vars, &script);
    out.assert_clean();
    assert_eq!(
        out.stdout,
        format!(
            "tcp4 {}\nmaps keepalive_preload=yes\ntcp4 {}\nmaps keepalive_preload=yes\n",
            configured(),
            untouched()
        ),
        "{out}"
    );
    assert!(
        !std::path::Path::new("/etc/ld.so.preload").exists()
            || !std::fs::read_to_string("/etc/ld.so.preload")
                .unwrap_or_default()
                .contains("keepalive_preload"),
        "the machine's /etc/ld.so.preload was touched"
    );
}

#[test]
#[ignore = "needs root: writes /etc/ld.so.preload in a mount namespace; scripts/test runs it"]
fn secure_execution_from_ld_so_preload_does_nothing() {
    let scratch = TempDir::new("system-wide-secure");
    std::fs::set_permissions(
        &scratch.0,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod scratch directory");
    let secure = scratch.path("kp-probe-with-capability");
    copy_with_capability(&probe_path(), &secure);
    // setpriv and env load the library too (everything does) without being secure: they run
    // with KEEPALIVE=off, which env removes for the probe, so that any line on stderr comes
    // from the probe.
    let mut vars = TIMINGS.to_vec();
    vars.push(("KEEPALIVE", "off"));
    let setpriv = tool("setpriv", "util-linux");
    let script = format!(
        "exec {} {} env -u KEEPALIVE KEEPALIVE_LOG=debug KEEPALIVE_OVERRIDE=yes {} at-secure + report tcp4 + pair + maps",
        setpriv.display(),
        AS_NOBODY.join(" "),
        secure.display()
    );
    let out = in_system_wide_namespace(&scratch, &vars, &script);
    out.assert_clean();
    let untouched = untouched();
    assert_eq!(
        out.stdout,
        format!(
            "at_secure=1\ntcp4 {untouched}\nlistener {untouched}\nclient {untouched}\naccepted {untouched}\nmaps keepalive_preload=yes\n"
        ),
        "{out}"
    );
}
