//! `kp-probe`: a test program for keepalive-preload. It makes sockets with plain libc calls (so
//! each hooked call is explicit) and prints what `getsockopt` reads back, one line per socket.
//! The tests run it with and without the library under `LD_PRELOAD` and compare.
//!
//! Commands can be chained with a lone `+`: `kp-probe mark + report tcp4 + maps`.
//! `exec` takes everything after it.

mod commands;
mod script;
mod sys;

use std::io::Write;

const USAGE: &str = "\
usage: kp-probe COMMAND [ARGS] [+ COMMAND [ARGS]]...
  mark                     print `kp-probe main` (the first thing main does)
  report KIND...           one line of read-back options per socket; KIND is one of
                           tcp4 tcp4-proto tcp4-flags tcp6 tcp6-proto tcp6-flags udp4 udp6
                           raw4 raw6 unix-stream unix-dgram unix-seqpacket socketpair mptcp4 sctp4
  pair [--v6] [--listen ADDR] [--connect ADDR] [--port P] [--accept4] [--nonblock]
                           listener, connected client and accepted socket, one line each
  program-sets [--v6] [--accept4] [--target accepted|client|listener|fresh]
               [--keepalive V] [--idle V] [--intvl V] [--cnt V] [--user-timeout V]
                           the Redis pattern: accept, then the program's own setsockopt calls
                           in the order given, each result, then the read-back
  listen-then-exec [--v6] [--port P] [--preload LIB] -- CMD ARGS...
                           make a listener, then exec CMD with {fd} and {port} replaced
  accept-inherited FD PORT [--v6] [--accept4] [--reuse-fd]
                           accept on an inherited listener: listener and accepted read-back;
                           --reuse-fd first moves it (dup2) onto the number of a closed socket
                           the library configured
  errno-script             a fixed sequence of calls, `ret=.. errno=..` for each
  reused-fds               SO_KEEPALIVE=0 on UNIX sockets that took the number of a TCP socket
                           (socketpair after close, dup2 over it), with the read-back
  threads N M [--kind tcp4|tcp6]
                           N threads x M sockets each, racing; `COUNT OPTIONS` per distinct read-back
  signal-storm N IDLE      N sockets while a 100us timer's signal handler makes sockets too;
                           `main-bad=.. handler-bad=.. handler-ran=..` (read-back != 1/IDLE)
  libkeepalive-test        what libkeepalive's test program prints
  maps [SUBSTRING]         whether a mapped file's path contains SUBSTRING (keepalive_preload)
  env NAME...              NAME=value or `NAME unset`
  setenv NAME VALUE        change this process's environment (prints nothing)
  at-secure                `at_secure=N`: getauxval(AT_SECURE), 1 in secure-execution mode
  exit CODE                exit with status CODE
  watch-die [pair flags] [--blackhole CMD] [--send yes] [--timeout S]
                           connect, run CMD ({port} replaced) to blackhole the peer, optionally
                           send, then `ended errno=.. after=..ms` or `alive after=..s`
  exec CMD ARGS...         replace this process with CMD";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("{USAGE}");
        std::process::exit(64);
    }
    let mut rest = args.as_slice();
    while !rest.is_empty() {
        let (name, after) = (&rest[0], &rest[1..]);
        let (command, next) = if name == "exec" || name == "listen-then-exec" {
            (after, &[][..])
        } else {
            match after.iter().position(|arg| arg == "+") {
                Some(at) => (&after[..at], &after[at + 1..]),
                None => (after, &[][..]),
            }
        };
        run(name, command);
        std::io::stdout().flush().ok();
        rest = next;
    }
}

fn run(name: &str, args: &[String]) {
    match name {
        "mark" => println!("kp-probe main"),
        "report" => commands::report(args),
        "pair" => commands::pair(args),
        "program-sets" => commands::program_sets(args),
        "listen-then-exec" => commands::listen_then_exec(args),
        "accept-inherited" => commands::accept_inherited(args),
        "errno-script" => script::errno_script(),
        "reused-fds" => script::reused_descriptors(),
        "threads" => commands::threads(args),
        "signal-storm" => commands::signal_storm(args),
        "libkeepalive-test" => commands::libkeepalive_test(),
        "maps" => commands::maps(args),
        "env" => commands::env(args),
        "setenv" => commands::setenv(args),
        "at-secure" => commands::at_secure(),
        "exit" => commands::exit(args),
        "watch-die" => commands::watch_die(args),
        "exec" => commands::exec(args),
        "help" | "--help" | "-h" => println!("{USAGE}"),
        _ => usage_error(&format!("unknown command {name:?}")),
    }
}

pub fn usage_error(message: &str) -> ! {
    eprintln!("kp-probe: {message}\n{USAGE}");
    std::process::exit(64)
}
