//! ZooKeeper load generator (the same client for every server under test): N
//! concurrent sessions, each with one request in flight, run create, getData,
//! setData and exists phases; prints throughput and latency percentiles per phase
//! as one JSON object per line.
//!
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use zookeeper_client as zk;

/// ZooKeeper load generator: concurrent sessions run create, getData, setData and
/// exists phases; one JSON line of figures per phase.
#[derive(Parser, Debug)]
#[command(name = "zkbench")]
struct Args {
    /// Server address.
    #[arg(default_value = "127.0.0.1:2181")]
    addr: String,
    /// Concurrent sessions.
    #[arg(default_value_t = 16)]
    clients: usize,
    /// Operations per session and phase.
    #[arg(default_value_t = 500)]
    ops: usize,
    /// Value size in bytes.
    #[arg(default_value_t = 128)]
    value_bytes: usize,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args {
        addr,
        clients,
        ops,
        value_bytes: size,
    } = Args::parse();
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

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::{CommandFactory, Parser};

    use super::Args;

    #[test]
    fn parses_positionals_and_refuses_unknown_flags() {
        Args::command().debug_assert();
        let a = Args::try_parse_from(["zkbench", "127.0.0.1:1", "2", "3", "4"]).unwrap();
        assert_eq!(
            (a.addr.as_str(), a.clients, a.ops, a.value_bytes),
            ("127.0.0.1:1", 2, 3, 4)
        );
        let help = Args::try_parse_from(["zkbench", "--help"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        let bad = Args::try_parse_from(["zkbench", "--no-such-flag"]).unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::UnknownArgument);
        assert_eq!(bad.exit_code(), 2);
        let bad = Args::try_parse_from(["zkbench", "h:1", "many"]).unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::ValueValidation);
    }
}
