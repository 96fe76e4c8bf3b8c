//! The helpers `scripts/bench` needs besides its timed loops: a process holding many TCP
//! sockets (for `keepalive-preload apply`), and the two ends of a connection whose peer
//! vanishes (the dead-peer rows).

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// Raises the soft limit on open files to at least `wanted` (root may raise the hard one too).
fn allow_descriptors(wanted: u64) -> Result<(), String> {
    // SAFETY: all-zero is a valid rlimit.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: limit is writable.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(super::last_error("getrlimit"));
    }
    if limit.rlim_cur >= wanted {
        return Ok(());
    }
    limit.rlim_cur = wanted;
    limit.rlim_max = limit.rlim_max.max(wanted);
    // SAFETY: limit is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(super::last_error("setrlimit(RLIMIT_NOFILE)"));
    }
    Ok(())
}

/// Waits until standard input is closed (or says anything): the driver's "you may stop".
fn wait_for_driver() {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

/// `hold SOCKETS`: a listener and SOCKETS/2 loopback connections (both ends in this process).
pub fn hold(sockets: u64) -> Result<(), String> {
    allow_descriptors(sockets + 64)?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    let mut held = Vec::with_capacity(usize::try_from(sockets).unwrap_or(0));
    for _ in 0..sockets / 2 {
        let client = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
        let (accepted, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        held.push(client);
        held.push(accepted);
    }
    println!(
        "ready pid={} sockets={} listener={address}",
        std::process::id(),
        held.len() + 1
    );
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    wait_for_driver();
    drop(held);
    Ok(())
}

/// `echo-server ADDRESS PORT`: echoes every byte, a thread per connection, until killed.
pub fn echo_server(address: &str, port: u16) -> Result<(), String> {
    let listener = TcpListener::bind((address, port)).map_err(|e| format!("bind: {e}"))?;
    println!("listening pid={} on {address}:{port}", std::process::id());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while let Ok(read) = stream.read(&mut buffer) {
                if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// `dead-peer ADDRESS PORT idle|data`: see the module documentation of main.rs.
pub fn dead_peer(address: &str, port: u16, mode: &str) -> Result<(), String> {
    let data = match mode {
        "idle" => false,
        "data" => true,
        _ => return Err(format!("mode must be idle or data, not {mode:?}")),
    };
    let mut stream = TcpStream::connect((address, port)).map_err(|e| format!("connect: {e}"))?;
    // One exchange, so that the last segment received is from now, as on any live link.
    let mut byte = [0u8; 1];
    stream
        .write_all(b"p")
        .and_then(|()| stream.read_exact(&mut byte))
        .map_err(|e| format!("echo: {e}"))?;
    println!("connected pid={}", std::process::id());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    wait_for_driver();
    let start = Instant::now();
    if data {
        stream.write_all(b"d").map_err(|e| format!("send: {e}"))?;
    }
    let mut buffer = [0u8; 64];
    let outcome = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break "end of stream".to_owned(),
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => break error.to_string().replace(' ', "_"),
        }
    };
    println!(
        "gone after={:.3} error={outcome}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
