//! The coordinator pod contract: run rivulet-coordinator with exactly the command, args and env
//! the builder renders into its pod template (only bind addresses moved to loopback ports and
//! the data dir to a temp dir) and check that it serves ZooKeeper clients and its probes.

mod fixtures;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use rivulet_operator::builders::*;

#[test]
fn coordinator_serves_with_the_rendered_pod_spec() {
    let Some(bin) = support::find_binary("rivulet-coordinator") else {
        eprintln!("SKIPPED: rivulet-coordinator is not built (cargo build --release -p rivulet-coordinator)");
        return;
    };
    let built = build_cluster(&fixtures::three_zone_cluster());
    let sts = built
        .objects
        .iter()
        .find(|o| o.name == "demo-coordinator" && o.kind == ObjKind::StatefulSet)
        .expect("coordinator statefulset");
    let sts: StatefulSet = serde_json::from_value(sts.value.clone()).expect("typed");
    let pod = sts.spec.expect("spec").template.spec.expect("pod spec");
    let c = &pod.containers[0];
    let command = c.command.clone().expect("command");
    assert_eq!(command, ["/usr/local/bin/rivulet-coordinator"]);

    let client_port = support::free_port();
    let admin_port = support::free_port();
    let data = tempfile::tempdir().expect("tempdir");
    // Only the pod-network specifics change: 0.0.0.0 + fixed ports -> loopback + free ports,
    // the volume mount -> a temp dir. Flags and their spelling are the builder's.
    let args: Vec<String> = c
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            a.replace(
                &format!("0.0.0.0:{COORDINATOR_CLIENT_PORT}"),
                &format!("127.0.0.1:{client_port}"),
            )
            .replace(
                &format!("0.0.0.0:{COORDINATOR_ADMIN_PORT}"),
                &format!("127.0.0.1:{admin_port}"),
            )
            .replace(COORDINATOR_DATA_DIR, &data.path().display().to_string())
        })
        .collect();
    let mut cmd = Command::new(bin);
    cmd.args(&args);
    for e in c.env.clone().unwrap_or_default() {
        if let Some(v) = e.value {
            cmd.env(e.name, v);
        }
    }
    let _proc = support::Proc(cmd.spawn().expect("spawn coordinator"));

    let client: SocketAddr = format!("127.0.0.1:{client_port}").parse().expect("addr");
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    assert!(
        support::wait_for_port(client, Duration::from_secs(20)),
        "client port never opened"
    );
    assert!(
        support::wait_for_port(admin, Duration::from_secs(20)),
        "admin port never opened"
    );

    // The probes the pod template declares answer 200.
    for probe in [c.readiness_probe.as_ref(), c.liveness_probe.as_ref()] {
        let path = probe
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
            .expect("http probe path");
        let mut ok = false;
        for _ in 0..100 {
            if support::http_get(admin, &path).is_some_and(|(s, _)| s == 200) {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(ok, "{path} never answered 200");
    }

    // A ZooKeeper four-letter word on the client port.
    let mut s = TcpStream::connect_timeout(&client, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"ruok").expect("write");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    assert_eq!(buf, "imok");
}
