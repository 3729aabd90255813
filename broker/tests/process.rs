//! The binary's edges: bad settings, a data directory already in use, graceful SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rivulet-broker");

use rivulet_testkit::free_port;

fn start(dir: &std::path::Path) -> (Child, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(["--listen-addr", &format!("127.0.0.1:{port}")])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, port, admin)
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

fn wait_ready(admin: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_status(admin, "/readyz") == Some(200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("broker did not become ready");
}

fn stderr_of(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_settings_exit_2_naming_the_setting() {
    for (args, needle) in [
        (vec!["--num-partitions", "zero"], "--num-partitions"),
        (vec!["--log-retention-ms", "-5"], "--log-retention-ms"),
        (vec!["--listen-addr", "localhost"], "--listen-addr"),
        (
            vec!["--log-message-timestamp-type", "Now"],
            "--log-message-timestamp-type",
        ),
        (vec!["--no-such-flag"], "--no-such-flag"),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // The same checks apply to environment variables.
    let out = Command::new(BIN)
        .env("RIVULET_SOCKET_REQUEST_MAX_BYTES", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--socket-request-max-bytes"));
}

#[test]
fn semantic_errors_exit_1_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--advertised-addr", "no-port-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--advertised-addr"));

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(BIN)
        .args(["--data-dir", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("data directory"));
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _, admin) = start(dir.path());
    wait_ready(admin);
    let (second, _, _) = start(dir.path());
    let (code, err) = stderr_of(second);
    assert_eq!(code, Some(1));
    assert!(err.contains("in use by another broker"), "{err}");
    // The first one is unaffected.
    assert_eq!(http_status(admin, "/readyz"), Some(200));
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (child, port, admin) = start(dir.path());
    wait_ready(admin);
    assert_eq!(http_status(admin, "/healthz"), Some(200));
    // An idle client connection must not hold up shutdown.
    let _idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let (code, err) = stderr_of(child);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("stopped cleanly"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
