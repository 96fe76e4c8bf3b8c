//! `apply` on a real `redis-server` started without the library, with two pub/sub subscribers
//! (redis-cli over IPv4, redis-py over IPv6) and a client connection: under each override
//! policy every socket is read back with `inspect --json`, and Redis still answers and its
//! subscribers still receive.
//!
//! Needs root (pidfd_getfd of redis-server), redis-server, redis-tools and python3-redis;
//! without them it fails, never skips.

mod apply_support;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use apply_support::*;
use common::*;
use serde_json::Value;

/// Redis' tcp-keepalive (300 s) on every client link it accepts: keepalive 300/100/3.
const REDIS_CLIENT: Values = (true, 300, 100, 3, 0);

/// A child killed on drop, its stdout lines on a channel.
struct Running {
    child: Child,
    lines: Option<Receiver<String>>,
}

impl Running {
    fn start(mut command: Command, name: &str) -> Self {
        without_variables(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e} (scripts/test installs it)"));
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines: Some(receiver),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits up to `within` for a line containing `text`.
    fn wait_for(&self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let lines = self.lines.as_ref().expect("lines");
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

const SUBSCRIBER_PY: &str = r#"
import sys, redis
p = redis.Redis(host="::1", port=int(sys.argv[1])).pubsub()
p.subscribe("kpa")
for m in p.listen():
    print("message", m, flush=True)
"#;

/// redis-server without the library, listening on 127.0.0.1 and ::1.
fn start_redis(port: u16, dir: &TempDir) -> Running {
    let mut command = Command::new(testkit::tool("redis-server", "redis-server"));
    command.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1 ::1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
        "--dir",
        &dir.0.to_string_lossy(),
    ]);
    let redis = Running::start(command, "redis-server");
    let deadline = Instant::now() + Duration::from_secs(15);
    while redis_cli(port, &["ping"]) != "PONG" {
        assert!(
            Instant::now() < deadline,
            "redis-server on {port} does not answer"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    redis
}

fn ping(client: &mut TcpStream) {
    client.write_all(b"PING\r\n").expect("PING");
    let mut reply = [0u8; 7];
    client.read_exact(&mut reply).expect("PONG");
    assert_eq!(&reply, b"+PONG\r\n");
}

/// The sockets of redis-server: listeners and accepted links, each with its values.
fn redis_sockets(pid: i32) -> (Vec<Value>, Vec<Value>) {
    let lines = inspect_json(pid);
    let (listeners, accepted): (Vec<Value>, Vec<Value>) = lines
        .into_iter()
        .partition(|line| line["state"] == "LISTEN");
    (listeners, accepted)
}

#[test]
#[ignore = "needs root: pidfd_getfd on a running redis-server; scripts/test runs it"]
fn redis_server_without_the_library_under_each_policy_keeps_answering_and_publishing() {
    require_root(NEEDS_ROOT);
    testkit::tool("redis-cli", "redis-tools");
    let redis_py = Command::new("/usr/bin/python3")
        .args(["-c", "import redis"])
        .status();
    assert!(
        redis_py.is_ok_and(|status| status.success()),
        "/usr/bin/python3 with the redis module is missing: apt-get install python3-redis"
    );
    for (policy, clients) in [
        // no: Redis' own 300/100/3 stay; the user timeout it leaves unset is ours.
        ("no", (true, 300, 100, 3, 12345)),
        ("yes", OUR_VALUES),
        // tighten: our 41/7 are tighter than 300/100, Redis' count 3 tighter than our 5.
        ("tighten", (true, 41, 7, 3, 12345)),
    ] {
        let dir = TempDir::new("apply-redis");
        let port = port(1);
        let redis = start_redis(port, &dir);
        let mut cli_subscriber = Command::new("redis-cli");
        cli_subscriber.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "subscribe",
            "kpa",
        ]);
        let cli_subscriber = Running::start(cli_subscriber, "redis-cli subscribe");
        let mut py_subscriber = Command::new("/usr/bin/python3");
        py_subscriber
            .args(["-c", SUBSCRIBER_PY])
            .arg(port.to_string());
        let py_subscriber = Running::start(py_subscriber, "python3 with redis-py");
        let deadline = Instant::now() + Duration::from_secs(15);
        while redis_cli(port, &["pubsub", "numsub", "kpa"]) != "kpa\n2" {
            assert!(
                Instant::now() < deadline,
                "subscribers not subscribed: {}",
                redis_cli(port, &["pubsub", "numsub", "kpa"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        ping(&mut client);

        let (listeners, accepted) = redis_sockets(redis.pid());
        assert_eq!(listeners.len(), 2, "{listeners:#?}");
        assert_eq!(
            accepted.len(),
            3,
            "two subscribers and a client: {accepted:#?}"
        );
        for line in &listeners {
            assert_eq!(values(line), KERNEL, "before: {line}");
        }
        for line in &accepted {
            assert_eq!(values(line), REDIS_CLIENT, "before: Redis' own: {line}");
        }
        assert!(
            accepted.iter().any(|line| line["family"] == "ipv6"),
            "the redis-py subscriber over ::1: {accepted:#?}"
        );

        let mut args = OURS.to_vec();
        let pid = redis.pid().to_string();
        args.extend(["--override", policy, &pid]);
        let output = apply(&args);
        println!("{policy}:\n{}", stdout(&output));
        assert_eq!(code(&output), 0, "{policy}: {}", stderr(&output));
        assert!(
            stdout(&output).contains("5 TCP sockets in 1 process: 5 changed"),
            "{}",
            stdout(&output)
        );

        let (listeners, accepted) = redis_sockets(redis.pid());
        assert_eq!((listeners.len(), accepted.len()), (2, 3));
        for line in &listeners {
            assert_eq!(values(line), OUR_VALUES, "{policy}: {line}");
        }
        for line in &accepted {
            assert_eq!(values(line), clients, "{policy}: {line}");
        }

        // Redis still answers on the link that was changed, and publishes to both subscribers.
        ping(&mut client);
        let message = format!("after-apply-{policy}");
        assert_eq!(redis_cli(port, &["publish", "kpa", &message]), "2");
        assert!(
            cli_subscriber.wait_for(&message, Duration::from_secs(5)),
            "{policy}: redis-cli subscriber did not receive {message}"
        );
        assert!(
            py_subscriber.wait_for(&message, Duration::from_secs(5)),
            "{policy}: redis-py subscriber did not receive {message}"
        );
        drop((cli_subscriber, py_subscriber, redis));
    }
}
