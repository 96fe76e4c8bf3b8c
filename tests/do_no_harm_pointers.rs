//! Do no harm (issue 10), part 1: hostile pointers and lengths. The fixture
//! `tests/fixtures/harm_pointers.c` passes accept/accept4, setsockopt and connect pointers
//! the kernel cannot read or write (0x10, an unmapped page, a PROT_NONE page, a buffer running
//! into a PROT_NONE page) and lengths it rejects ((socklen_t)-1, 0x80000000, 0, 1, 2, 3,
//! huge). The kernel answers each with EFAULT, EINVAL, or success where it never looks at the
//! argument (`accept(l, NULL, (socklen_t *)0x10)`). With the library every call must print the
//! same return value and errno: the library may not read what the kernel would not read, and
//! may not "repair" a length the kernel rejects. Each case runs in a child of its own, so a
//! crash shows as `LABEL: killed by signal 11` and does not hide the other cases.
//!
//! Every section runs under many configurations, because different ones take different paths
//! through the hooks (fast path, filters, override, debug log). The accept, accept4 and
//! setsockopt cases run twice: in a process whose hooks have not been called yet, and again
//! after one ordinary accept and setsockopt, with what the library learns from a first call
//! (its setsockopt check before the call narrowed, its accept witness published).

mod common;

use common::*;

/// The configurations every section is run under (each also without the library).
fn configurations() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("no variables", vec![]),
        ("timings", timings_with(&[])),
        ("KEEPALIVE=off", timings_with(&[("KEEPALIVE", "off")])),
        (
            "KEEPALIVE_PROGRAMS excludes the program",
            timings_with(&[
                ("KEEPALIVE_PROGRAMS", "redis-server"),
                ("KEEPALIVE_OVERRIDE", "yes"),
            ]),
        ),
        (
            "KEEPALIVE_OVERRIDE=yes",
            timings_with(&[("KEEPALIVE_OVERRIDE", "yes")]),
        ),
        (
            "KEEPALIVE_OVERRIDE=tighten",
            timings_with(&[("KEEPALIVE_OVERRIDE", "tighten")]),
        ),
        (
            "KEEPALIVE_PORTS matching, override yes",
            timings_with(&[
                ("KEEPALIVE_PORTS", "1-65535"),
                ("KEEPALIVE_OVERRIDE", "yes"),
            ]),
        ),
        (
            "KEEPALIVE_PORTS not matching",
            timings_with(&[("KEEPALIVE_PORTS", "1")]),
        ),
        (
            "KEEPALIVE_NETS loopback, override tighten",
            timings_with(&[
                ("KEEPALIVE_NETS", "127.0.0.0/8,::1"),
                ("KEEPALIVE_OVERRIDE", "tighten"),
            ]),
        ),
        (
            "KEEPALIVE_NETS elsewhere, override yes",
            timings_with(&[
                ("KEEPALIVE_NETS", "10.0.0.0/8"),
                ("KEEPALIVE_OVERRIDE", "yes"),
            ]),
        ),
        (
            "KEEPALIVE_LOG=debug, override yes",
            timings_with(&[("KEEPALIVE_LOG", "debug"), ("KEEPALIVE_OVERRIDE", "yes")]),
        ),
        (
            "KEEPALIVE_LOG=debug, ports and nets, override yes",
            timings_with(&[
                ("KEEPALIVE_LOG", "debug"),
                ("KEEPALIVE_PORTS", "1024-65535"),
                ("KEEPALIVE_NETS", "127.0.0.1,::1"),
                ("KEEPALIVE_OVERRIDE", "yes"),
            ]),
        ),
    ]
}

fn fixture(scratch: &TempDir) -> std::path::PathBuf {
    compile_program("harm_pointers.c", "harm_pointers", scratch)
}

/// Runs one section of the fixture under every configuration; fails with every difference.
fn section(name: &str) {
    let scratch = TempDir::new(&format!("harm-pointers-{name}"));
    let program = fixture(&scratch);
    let run = Run::new(&program, &[name]);
    // The control run must show the kernel's answers the test is about.
    let bare = run.outcome(Stderr::Captured, LIMIT);
    assert_eq!(bare.status, "exit 0", "{bare}");
    assert!(
        bare.stdout
            .ends_with(&format!("harm_pointers {name} done\n")),
        "{bare}"
    );
    assert!(
        !bare.stdout.contains("killed by signal"),
        "the fixture itself crashed without the library\n{bare}"
    );
    assert_same_under(&run, &configurations(), Stderr::Captured);
}

#[test]
fn accept_with_hostile_address_and_length_pointers_is_unchanged() {
    // accept(l, NULL, (socklen_t *)0x10) succeeds without the library: the kernel reads the
    // length only when there is an address buffer. Unreadable lengths, unwritable buffers and
    // lengths of -1 or 0x80000000 fail with EFAULT/EINVAL.
    section("accept");
}

#[test]
fn accept4_with_hostile_address_and_length_pointers_is_unchanged() {
    section("accept4");
}

#[test]
fn setsockopt_with_hostile_value_pointers_and_lengths_is_unchanged() {
    // On a TCP socket and on an accepted one, for each of the five options the library
    // manages: optval 0x10/NULL/unmapped/PROT_NONE/running into PROT_NONE fail with EFAULT;
    // optlen (socklen_t)-1, 0x80000000, 0, 2, 3 fail with EINVAL (a negative int is rejected
    // by the kernel before it looks at the option) — also under KEEPALIVE_OVERRIDE=yes and
    // tighten, where the library must not substitute its own int for such a call.
    section("setsockopt");
}

#[test]
fn connect_with_hostile_addresses_and_lengths_is_unchanged() {
    // connect(s, 0x10, 16) and friends fail with EFAULT, lengths 0, 1, 2, 15, 129, 0x7fffffff
    // and -1 with EINVAL — also under KEEPALIVE_PORTS/KEEPALIVE_NETS, where the library
    // decides at connect from the address the program passes.
    section("connect");
}

#[test]
fn keepalive_on_sockets_that_are_not_tcp_is_left_to_the_program() {
    // UDP, UDP6, UNIX stream and datagram sockets and socketpairs: fresh ones read back
    // SO_KEEPALIVE=0, and the program's own SO_KEEPALIVE=0/1 and TCP_KEEPIDLE calls get the
    // kernel's answers and read back as set, under KEEPALIVE_OVERRIDE=yes as well.
    section("not-tcp");
}

#[test]
fn the_library_does_configure_the_sockets_of_the_fixture() {
    // Guards the tests above against proving nothing: under the timings and override yes the
    // accepted socket of the setsockopt section reads back the configured values once the
    // hostile calls are done (they changed nothing).
    let scratch = TempDir::new("harm-pointers-effect");
    let program = fixture(&scratch);
    let run = Run::new(&program, &["setsockopt"]);
    let pair = Differential::run(
        &run,
        &timings_with(&[("KEEPALIVE_OVERRIDE", "yes")]),
        Stderr::Captured,
    );
    let label = "effect accepted after the hostile setsockopt calls";
    assert_eq!(pair.without.line(label), untouched(), "{}", pair.without);
    assert_eq!(pair.with.line(label), configured(), "{}", pair.with);
    assert_eq!(
        pair.with
            .line("effect tcp after the hostile setsockopt calls"),
        configured(),
        "{}",
        pair.with
    );
}
