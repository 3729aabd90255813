//! Finding and running the server binaries for tests that need a real peer.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The release binary `name`: `$RIVULET_BIN_DIR`, else the workspace's `target/release`,
/// else `$CARGO_TARGET_DIR/release`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("RIVULET_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    dirs.push(root.join("target/release"));
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(d).join("release"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

pub use rivulet_testkit::free_port;

/// Waits until `addr` accepts TCP connections, up to `limit`.
pub fn wait_for_port(addr: SocketAddr, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.0 GET on loopback; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Starts a standalone rivulet-broker on loopback; `None` (with a message) when not built.
pub fn start_broker(data: &std::path::Path) -> Option<(Proc, SocketAddr)> {
    start_broker_with(data, None)
}

/// A standalone broker as a secured cluster's replication listener is: one SASL_PLAINTEXT
/// listener (SCRAM-SHA-512) with the operator's user bootstrapped from a users file.
pub fn start_secured_broker(
    data: &std::path::Path,
    operator_password: &str,
) -> Option<(Proc, SocketAddr)> {
    start_broker_with(data, Some(operator_password))
}

fn start_broker_with(
    data: &std::path::Path,
    operator_password: Option<&str>,
) -> Option<(Proc, SocketAddr)> {
    let Some(bin) = find_binary("rivulet-broker") else {
        eprintln!("SKIPPED: rivulet-broker is not built (cargo build --release -p rivulet-broker)");
        return None;
    };
    let port = free_port();
    let admin = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--broker-id",
        "0",
        "--admin-addr",
        &format!("127.0.0.1:{admin}"),
        "--data-dir",
        &data.display().to_string(),
    ]);
    match operator_password {
        None => cmd.args([
            "--listen-addr",
            &addr.to_string(),
            "--advertised-addr",
            &addr.to_string(),
        ]),
        Some(pw) => {
            std::fs::create_dir_all(data).expect("data dir");
            let users = data.join("bootstrap-users");
            std::fs::write(&users, format!("rivulet-operator={pw}\n")).expect("users file");
            cmd.args(["--listeners", &format!("SASL_PLAINTEXT://{addr}")])
                .arg("--bootstrap-scram-users-file")
                .arg(&users)
        }
    };
    let child = cmd
        .env("RIVULET_LOG_LEVEL", "warn")
        .spawn()
        .expect("spawn rivulet-broker");
    let p = Proc(child);
    assert!(
        wait_for_port(addr, Duration::from_secs(20)),
        "broker did not listen on {addr}"
    );
    Some((p, addr))
}

/// The in-memory API server for fast reconcile tests (test code: not part of the library).
pub mod fakeapi;
pub mod pods;
