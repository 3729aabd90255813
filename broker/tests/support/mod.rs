//! Shared by the broker's integration tests that need a real `rivulet-coordinator` process.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use rivulet_testkit::free_port;

/// The coordinator binary of this build: `$RIVULET_COORDINATOR_BIN`, else next to this test's
/// profile directory (where `cargo test --workspace` puts every binary), else the workspace's
/// target directories.
pub fn coordinator_bin() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("RIVULET_COORDINATOR_BIN") {
        candidates.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile) = exe.parent().and_then(|deps| deps.parent()) {
            candidates.push(profile.join("rivulet-coordinator"));
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in [root.join("target/release"), root.join("target/debug")] {
        candidates.push(dir.join("rivulet-coordinator"));
    }
    candidates.into_iter().find(|p| p.is_file()).expect(
        "rivulet-coordinator is not built: `cargo test --workspace` builds it, or run \
         `cargo build -p rivulet-coordinator` (same profile) first",
    )
}

/// ZooKeeper's `ruok` four-letter command.
pub fn ruok(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut out = String::new();
    s.write_all(b"ruok").is_ok() && s.read_to_string(&mut out).is_ok() && out == "imok"
}

/// A `rivulet-coordinator` on a free loopback port with a throwaway data directory, killed on
/// drop.
pub struct Coordinator {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Coordinator {
    /// Short ticks so that sessions expire quickly in tests.
    pub fn start() -> Coordinator {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Self::spawn(&addr, &dir);
        let mut c = Coordinator {
            child,
            addr,
            _dir: dir,
        };
        c.wait_ready();
        c
    }

    fn spawn(addr: &str, dir: &tempfile::TempDir) -> Child {
        Command::new(coordinator_bin())
            .args(["--client-addr", addr])
            .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--tick-time-ms", "100", "--max-session-timeout-ms", "30000"])
            .args(["--fsync", "false", "--log-level", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn rivulet-coordinator")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("coordinator exited during start: {status}");
            }
            if ruok(&self.addr) {
                return;
            }
            assert!(Instant::now() < deadline, "coordinator did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the coordinator gracefully (SIGTERM) and starts it again on the same address and
    /// data directory: sessions survive, but every client has to reconnect.
    pub fn restart(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        self.child = Self::spawn(&self.addr, &self._dir);
        self.wait_ready();
    }

    /// Sends `sig` (e.g. SIGSTOP/SIGCONT to freeze the coordinator past sessions' timeouts).
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        // A frozen coordinator still dies on SIGKILL; SIGCONT first keeps its tests' order clear.
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Apache ZooKeeper 3.8 from Debian's libzookeeper-java (standalone, loopback, short ticks),
/// killed on drop; `None` when it is not installed.
pub struct ApacheZooKeeper {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
    classpath: String,
    cfg: PathBuf,
}

impl ApacheZooKeeper {
    /// `None` (the caller prints SKIPPED) when ZooKeeper is not installed — unless
    /// `RIVULET_REQUIRE_ZOOKEEPER` is set, as `make test` does after installing it: there a missing
    /// ZooKeeper is a failure, so the comparison cannot silently stop running.
    pub fn start() -> Option<ApacheZooKeeper> {
        let zk = Self::try_start();
        if zk.is_none() && std::env::var_os("RIVULET_REQUIRE_ZOOKEEPER").is_some() {
            panic!("RIVULET_REQUIRE_ZOOKEEPER is set but Apache ZooKeeper (Debian libzookeeper-java + java) could not be started");
        }
        zk
    }

    fn try_start() -> Option<ApacheZooKeeper> {
        let out = Command::new("dpkg")
            .args(["-L", "libzookeeper-java"])
            .output()
            .ok()?;
        let listing = String::from_utf8_lossy(&out.stdout).to_string();
        let main = listing
            .split_whitespace()
            .find(|p| p.ends_with("/usr/share/java/zookeeper.jar"))?
            .to_string();
        let java = PathBuf::from("/usr/share/java");
        let deps = [
            "zookeeper-jute.jar",
            "slf4j-api.jar",
            "slf4j-simple.jar",
            "commons-cli.jar",
            "commons-io.jar",
            "metrics-core.jar",
            "snappy-java.jar",
            "netty-all.jar",
        ];
        let mut cp = vec![main];
        cp.extend(deps.iter().map(|d| java.join(d).display().to_string()));
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=100\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n\
                 maxSessionTimeout=30000\n",
                dir.path().join("zk").display()
            ),
        )
        .ok()?;
        let classpath = cp.join(":");
        let child = Self::spawn(&classpath, &cfg)?;
        let mut zk = ApacheZooKeeper {
            child,
            addr: format!("127.0.0.1:{port}"),
            _dir: dir,
            classpath,
            cfg,
        };
        zk.wait_ready();
        Some(zk)
    }

    fn spawn(classpath: &str, cfg: &std::path::Path) -> Option<Child> {
        Command::new("java")
            .args(["-Xmx256m", "-cp", classpath])
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Apache ZooKeeper exited during start: {status}");
            }
            if ruok(&self.addr) {
                return;
            }
            assert!(Instant::now() < deadline, "Apache ZooKeeper did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops ZooKeeper (SIGTERM) and starts it again with the same configuration and data:
    /// sessions survive (they are in its transaction log), connections do not.
    pub fn restart(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        self.child = Self::spawn(&self.classpath, &self.cfg).expect("restart Apache ZooKeeper");
        self.wait_ready();
    }
}

impl Drop for ApacheZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
