//! rivulet-loadgen: drives a Kafka-protocol broker with librdkafka (the `rdkafka` crate) and
//! prints what it measured as one JSON object per run on stdout (human-readable lines go to stderr).
//!
//! Consumers use `assign()` with explicit offsets, so no consumer-group support is needed from the
//! broker (librdkafka still wants a group.id for assign(); nothing is ever committed with it).

mod client;
mod consume;
mod latency;
mod produce;
mod stats;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "rivulet-loadgen", version, about)]
struct Cli {
    /// Bootstrap servers, host:port[,host:port].
    #[arg(
        long,
        short = 'b',
        env = "RIVULET_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,

    /// A librdkafka property for every client, key=value (repeatable), e.g.
    /// `-X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512`.
    #[arg(short = 'X', long = "client-set", value_parser = produce::parse_kv, global = true)]
    client_props: Vec<(String, String)>,

    /// A librdkafka properties file (`key=value` lines, `#` comments) for every client, as
    /// `kcat -F`; `-X` settings win over it.
    #[arg(short = 'F', long = "client-config", global = true)]
    client_config: Option<std::path::PathBuf>,

    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a topic (fails if it exists).
    CreateTopic {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
    },
    /// Produce N messages of a fixed size as fast as the producer can, round-robin over partitions.
    Produce(produce::ProduceArgs),
    /// Read a topic from the beginning up to the high watermarks seen at start.
    Consume(consume::ConsumeArgs),
    /// Produce at a fixed rate while a consumer reads; report end-to-end latency percentiles.
    Latency(latency::LatencyArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut props = match &cli.client_config {
        Some(path) => client::read_properties(path)?,
        None => Vec::new(),
    };
    props.extend(cli.client_props);
    let conn = client::Conn {
        bootstrap: cli.bootstrap,
        props,
    };
    let report = match cli.cmd {
        Cmd::CreateTopic { topic, partitions } => {
            client::create_topic(&conn, &topic, partitions)?;
            serde_json::json!({"mode": "create-topic", "topic": topic, "partitions": partitions})
        }
        Cmd::Produce(args) => produce::run(&conn, &args)?,
        Cmd::Consume(args) => consume::run(&conn, &args)?,
        Cmd::Latency(args) => latency::run(&conn, &args)?,
    };
    println!("{report}");
    Ok(())
}
