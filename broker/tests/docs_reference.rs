//! The settings reference in docs/broker.md must name every flag and env var the binary has, and
//! its Kafka API table must be exactly what ApiVersions advertises.

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

#[test]
fn the_api_table_is_what_api_versions_advertises() {
    use rivulet_broker::protocol::versions::SUPPORTED;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/broker.md"))
        .expect("docs/broker.md exists");
    let section = doc
        .split("## Kafka APIs")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Kafka APIs section");
    // Rows `| Name | key | lo–hi |` (or a single version).
    let mut documented: Vec<(String, i16, i16, i16)> = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let [name, key, versions] = cells.as_slice() else {
            continue;
        };
        let Ok(key) = key.parse::<i16>() else {
            continue;
        };
        let (lo, hi) = match versions.split_once('–') {
            Some((lo, hi)) => (lo.parse().unwrap(), hi.parse().unwrap()),
            None => {
                let v = versions.parse().unwrap();
                (v, v)
            }
        };
        documented.push((name.to_string(), key, lo, hi));
    }
    let mut advertised: Vec<(String, i16, i16, i16)> = SUPPORTED
        .iter()
        .map(|(api, lo, hi)| (format!("{api:?}"), *api as i16, *lo, *hi))
        .collect();
    documented.sort_by_key(|d| d.1);
    advertised.sort_by_key(|d| d.1);
    assert_eq!(
        documented, advertised,
        "docs/broker.md's API table vs ApiVersions"
    );
}
