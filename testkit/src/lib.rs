//! Helpers shared by the workspace's integration tests.

use std::net::TcpListener;
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
