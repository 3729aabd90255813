//! The settings reference in docs/broker.md must name every flag and env var the binary has.

use clap::{CommandFactory, Parser};
use rivulet_broker::config::BrokerConfig;

#[test]
fn every_flag_and_env_var_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/broker.md"))
        .expect("docs/broker.md exists");
    let cmd = BrokerConfig::command();
    let mut missing = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        if !doc.contains(&format!("`--{long}`")) {
            missing.push(format!("--{long}"));
        }
        match arg.get_env() {
            Some(env) => {
                let env = env.to_string_lossy();
                if !doc.contains(&format!("`{env}`")) {
                    missing.push(env.to_string());
                }
            }
            None => missing.push(format!("--{long} has no env var")),
        }
    }
    assert!(missing.is_empty(), "undocumented settings: {missing:?}");
}

#[test]
fn bad_settings_are_refused_with_the_flag_named() {
    let err = BrokerConfig::try_parse_from(["rivulet-broker", "--num-partitions", "0"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--num-partitions"), "{err}");
    let err = BrokerConfig::try_parse_from(["rivulet-broker", "--listen-addr", "nowhere"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--listen-addr"), "{err}");
}
