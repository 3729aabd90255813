//! Helpers shared by the workspace's integration tests.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

/// A loopback port that is free now and that this test process has never handed out before.
///
/// Tests pick ports before the servers they start bind them. Once the probing socket is closed the
/// kernel may return the same ephemeral port to the next `bind(0)`, so a broker's listener and
/// admin ports picked back to back could collide (seen in CI); remembering what was handed out
/// rules that out within one process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Runs `bin` with `args` in a fresh empty directory, with no RIVULET_* environment;
/// returns its output and the names of whatever it left in that directory.
pub fn run_in_empty_dir(bin: &Path, args: &[&str]) -> (Output, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(dir.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RIVULET_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let left = std::fs::read_dir(dir.path())
        .expect("read temp dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    (out, left)
}

/// The command-line contract every binary of the workspace keeps: `--help` prints usage
/// and exits 0, an unknown flag is refused with a clear error and a non-zero exit, and
/// neither starts any work (nothing is written in the working directory).
pub fn assert_cli_contract(bin: &Path) {
    let name = bin.display();
    let (out, left) = run_in_empty_dir(bin, &["--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{name} --help: {:?}", out.status);
    assert!(stdout.contains("Usage:"), "{name} --help printed: {stdout}");
    assert!(left.is_empty(), "{name} --help wrote {left:?}");

    let (out, left) = run_in_empty_dir(bin, &["--no-such-flag"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name} --no-such-flag: {stderr}"
    );
    assert!(
        stderr.contains("unexpected argument '--no-such-flag'"),
        "{name} --no-such-flag printed: {stderr}"
    );
    assert!(left.is_empty(), "{name} --no-such-flag wrote {left:?}");
}

#[cfg(test)]
mod tests {
    use super::free_port;

    #[test]
    fn never_hands_out_a_port_twice() {
        let mut ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 200);
    }
}
