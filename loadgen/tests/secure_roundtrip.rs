//! rivulet-loadgen over SASL_SSL (SCRAM-SHA-512) against a real rivulet-broker with the ACL
//! authorizer on: the properties file (`-F`) and `-X` reach every client the modes create
//! (admin, producer, consumer), so create-topic, produce and consume work as an authenticated
//! user, and a wrong password (given with `-X`, which wins over the file) fails the run.
//!
//! The broker binary is taken from `RIVULET_BROKER_BIN`, else target/<profile>/rivulet-broker.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rivulet_testkit::free_port;

fn broker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RIVULET_BROKER_BIN") {
        return PathBuf::from(p);
    }
    // The loadgen binary under test sits next to the broker built by the same cargo run.
    let p = Path::new(env!("CARGO_BIN_EXE_rivulet-loadgen")).with_file_name("rivulet-broker");
    assert!(
        p.is_file(),
        "{} not found: build rivulet-broker or set RIVULET_BROKER_BIN",
        p.display()
    );
    p
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
fn pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    // Distinct subjects: a leaf named like its issuer looks self-signed to OpenSSL.
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "rivulet-loadgen test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, "broker");
    leaf.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    let cert = leaf.signed_by(&key, &Issuer::new(ca, ca_key)).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("broker.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("broker.key"), key.serialize_pem()).unwrap();
}

struct Broker {
    child: Child,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loadgen(bootstrap: &str, props: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rivulet-loadgen"))
        .args(["-b", bootstrap, "-F"])
        .arg(props)
        .args(args)
        .output()
        .expect("run rivulet-loadgen")
}

fn report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "rivulet-loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("a JSON report")).expect("JSON")
}

#[test]
fn loadgen_runs_over_sasl_ssl_as_an_authorized_user() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    std::fs::write(dir.path().join("users"), "bench=bench-secret\n").unwrap();
    let (port, admin) = (free_port(), free_port());
    let bootstrap = format!("127.0.0.1:{port}");
    let child = Command::new(broker_bin())
        .args(["--listeners", &format!("SASL_SSL://{bootstrap}")])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--ssl-cert-file")
        .arg(dir.path().join("broker.pem"))
        .arg("--ssl-key-file")
        .arg(dir.path().join("broker.key"))
        .arg("--bootstrap-scram-users-file")
        .arg(dir.path().join("users"))
        .args(["--authorizer", "simple", "--super-users", "User:bench"])
        .args(["--connection-failed-authentication-delay-ms", "10"])
        .args(["--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn rivulet-broker");
    let mut broker = Broker { child };
    // Ready once the listener accepts connections.
    let addr: SocketAddr = bootstrap.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "broker not listening within 30 s"
        );
        assert!(broker.child.try_wait().unwrap().is_none(), "broker exited");
        std::thread::sleep(Duration::from_millis(50));
    }

    let props = dir.path().join("client.properties");
    std::fs::write(
        &props,
        format!(
            "# the benchmark user\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.username=bench\nsasl.password=bench-secret\nssl.ca.location={}\n",
            dir.path().join("ca.pem").display()
        ),
    )
    .unwrap();
    report(&loadgen(
        &bootstrap,
        &props,
        &["create-topic", "--topic", "sec", "--partitions", "2"],
    ));
    let p = report(&loadgen(
        &bootstrap,
        &props,
        &[
            "produce",
            "--topic",
            "sec",
            "--messages",
            "5000",
            "--size",
            "100",
            "--partitions",
            "2",
        ],
    ));
    assert_eq!(
        (p["messages"].as_u64(), p["failed"].as_u64()),
        (Some(5000), Some(0))
    );
    let c = report(&loadgen(&bootstrap, &props, &["consume", "--topic", "sec"]));
    assert_eq!(c["messages"].as_u64(), Some(5000));
    assert_eq!(c["bytes"].as_u64(), Some(500_000));

    // -X wins over the file: the wrong password makes the run fail.
    let out = loadgen(
        &bootstrap,
        &props,
        &[
            "-X",
            "sasl.password=wrong",
            "-X",
            "message.timeout.ms=3000",
            "produce",
            "--topic",
            "sec",
            "--messages",
            "10",
        ],
    );
    assert!(!out.status.success(), "a wrong password produced");
}
