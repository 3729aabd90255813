//! Leader election on a Lease and the /healthz, /readyz, /metrics server.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rivulet_operator::http::{serve, HttpState};
use rivulet_operator::leader::LeaderElector;
use rivulet_operator::metrics::Metrics;
use support::fakeapi::FakeApi;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

#[tokio::test]
async fn only_one_replica_leads_and_the_other_takes_over_after_expiry() {
    let api = FakeApi::new();
    let lease = Duration::from_secs(2);
    let a = LeaderElector::new(api.client("ops"), "ops", "rivulet", "pod-a", lease);
    let b = LeaderElector::new(api.client("ops"), "ops", "rivulet", "pod-b", lease);
    assert!(a.try_acquire().await.expect("a"));
    assert!(
        !b.try_acquire().await.expect("b"),
        "b must not lead while a's lease is fresh"
    );
    assert!(a.try_acquire().await.expect("a renews"));
    let l = api.get(LEASES, "rivulet").expect("lease");
    assert_eq!(l["spec"]["holderIdentity"], "pod-a");

    // a stops renewing; after the lease duration b takes over and the transition is counted.
    tokio::time::sleep(lease + Duration::from_millis(1100)).await;
    assert!(b.try_acquire().await.expect("b"));
    let l = api.get(LEASES, "rivulet").expect("lease");
    assert_eq!(l["spec"]["holderIdentity"], "pod-b");
    assert_eq!(l["spec"]["leaseTransitions"], 1);
    assert!(!a.try_acquire().await.expect("a"), "a lost it");
}

#[tokio::test]
async fn health_ready_and_metrics_endpoints() {
    let metrics = Arc::new(Metrics::default());
    metrics.observe("kafkacluster", 0.01, false);
    metrics.observe("kafkacluster", 0.02, true);
    let ready = Arc::new(AtomicBool::new(false));
    let port = rivulet_testkit::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let server = tokio::spawn(serve(
        addr,
        HttpState {
            metrics,
            ready: ready.clone(),
        },
    ));
    let get = |path: &'static str| async move {
        tokio::task::spawn_blocking(move || {
            for _ in 0..50 {
                if let Some(r) = http_get(addr, path) {
                    return r;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("no answer on {path}");
        })
        .await
        .expect("join")
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 503);
    ready.store(true, Ordering::Relaxed);
    assert_eq!(get("/readyz").await.0, 200);
    let (code, body) = get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("rivulet_operator_reconciliations_total{controller=\"kafkacluster\"} 2"),
        "{body}"
    );
    assert!(
        body.contains("rivulet_operator_reconcile_errors_total{controller=\"kafkacluster\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("rivulet_operator_reconcile_duration_seconds"),
        "{body}"
    );
    server.abort();
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        code,
        buf.split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default(),
    ))
}
