//! ZooKeeper load generator (the same client for every server under test): N
//! concurrent sessions, each with one request in flight, run create, getData,
//! setData and exists phases; prints throughput and latency percentiles per phase
//! as one JSON object per line.
//!
//! usage: zkbench <host:port> [clients=16] [ops-per-client=500] [value-bytes=128]

use std::sync::Arc;
use std::time::{Duration, Instant};

use zookeeper_client as zk;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2181".into());
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let ops: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(500);
    let size: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(128);
    let value = Arc::new(vec![b'v'; size]);

    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        sessions.push(Arc::new(
            zk::Client::connector()
                .with_session_timeout(Duration::from_secs(20))
                .connect(&addr)
                .await?,
        ));
    }
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match sessions[0].create("/bench", b"", &open).await {
        Ok(_) | Err(zk::Error::NodeExists) => {}
        Err(e) => return Err(e.into()),
    }

    for phase in ["create", "getData", "setData", "exists"] {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (c, client) in sessions.iter().enumerate() {
            let client = client.clone();
            let value = value.clone();
            tasks.push(tokio::spawn(async move {
                let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                let mut lat = Vec::with_capacity(ops);
                let mut errors = 0u64;
                for i in 0..ops {
                    let path = format!("/bench/c{c}-{i}");
                    let t = Instant::now();
                    let ok = match phase {
                        "create" => client.create(&path, &value, &open).await.is_ok(),
                        "getData" => client.get_data(&path).await.is_ok(),
                        "setData" => client.set_data(&path, &value, None).await.is_ok(),
                        _ => matches!(client.check_stat(&path).await, Ok(Some(_))),
                    };
                    lat.push(t.elapsed());
                    if !ok {
                        errors += 1;
                    }
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::with_capacity(clients * ops);
        let mut errors = 0;
        for t in tasks {
            let (lat, e) = t.await?;
            all.extend(lat);
            errors += e;
        }
        let elapsed = start.elapsed().as_secs_f64();
        all.sort();
        println!(
            "{{\"phase\":\"{phase}\",\"clients\":{clients},\"ops\":{},\"errors\":{errors},\"seconds\":{elapsed:.3},\"ops_per_sec\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3}}}",
            all.len(),
            all.len() as f64 / elapsed,
            pct(&all, 0.50),
            pct(&all, 0.99),
            pct(&all, 0.999)
        );
    }
    Ok(())
}
