//! The config surface kept in step: the operator's list of accepted cluster config keys
//! (`BROKER_CONFIG_KEYS`), the broker's own flags and their bounds (`rivulet_broker::config`,
//! parsed by the broker's clap parser), the broker's topic configs, and the tables in
//! docs/operator.md.

use std::collections::BTreeSet;

use clap::CommandFactory;
use clap::Parser;
use rivulet_broker::config::BrokerConfig;
use rivulet_operator::presets::{
    broker_key, check_value, BROKER_CONFIG_KEYS, BROKER_SETTINGS_NOT_IN_CONFIG,
    TOPIC_CONFIGS_SET_BY_SCALING, TOPIC_CONFIG_KEYS,
};

/// (env, long flag, help) of every broker setting.
fn broker_args() -> Vec<(String, String, String)> {
    BrokerConfig::command()
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_string();
            let long = a.get_long()?.to_string();
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            Some((env, long, help))
        })
        .collect()
}

#[test]
fn every_broker_setting_is_mapped_or_explained() {
    let args = broker_args();
    assert!(args.len() > 40, "broker flags: {}", args.len());
    let mapped: BTreeSet<&str> = BROKER_CONFIG_KEYS.iter().map(|(_, e, _)| *e).collect();
    let not: BTreeSet<&str> = BROKER_SETTINGS_NOT_IN_CONFIG
        .iter()
        .map(|(e, _)| *e)
        .collect();
    assert_eq!(
        mapped.len(),
        BROKER_CONFIG_KEYS.len(),
        "an env mapped twice"
    );
    assert!(mapped.is_disjoint(&not), "{:?}", mapped.intersection(&not));
    let broker: BTreeSet<&str> = args.iter().map(|(e, _, _)| e.as_str()).collect();
    let unclassified: Vec<&&str> = broker
        .difference(&mapped)
        .filter(|e| !not.contains(**e))
        .collect();
    assert!(
        unclassified.is_empty(),
        "broker settings neither in BROKER_CONFIG_KEYS nor in BROKER_SETTINGS_NOT_IN_CONFIG: {unclassified:?}"
    );
    let unknown: Vec<&&str> = mapped
        .union(&not)
        .filter(|e| !broker.contains(**e))
        .collect();
    assert!(unknown.is_empty(), "not broker settings: {unknown:?}");
    // The broker's help names the Kafka key each flag stands for.
    for (key, env, _) in BROKER_CONFIG_KEYS {
        let (_, _, help) = args.iter().find(|(e, _, _)| e == env).expect("mapped arg");
        assert!(
            help.contains(key),
            "{env}'s help doesn't name {key}: {help:?}"
        );
    }
}

#[test]
fn the_operator_accepts_exactly_the_values_the_broker_accepts() {
    let args = broker_args();
    let probes = [
        "",
        "abc",
        "true",
        "false",
        "yes",
        "1.5",
        "-2",
        "-1",
        "0",
        "1",
        "2",
        "9",
        "10",
        "11",
        "63",
        "64",
        "99",
        "100",
        "101",
        "999",
        "1000",
        "1001",
        "1023",
        "1024",
        "60000",
        "60001",
        "100000",
        "100001",
        "600000",
        "600001",
        "32767",
        "32768",
        "2147483647",
        "2147483648",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "CreateTime",
        "LogAppendTime",
        "createtime",
    ];
    let mut mismatches = Vec::new();
    for (key, env, kind) in BROKER_CONFIG_KEYS {
        let (_, long, _) = args.iter().find(|(e, _, _)| e == env).expect("mapped arg");
        for v in probes {
            let operator = check_value(*kind, v).is_ok();
            let broker =
                BrokerConfig::try_parse_from(["rivulet-broker", &format!("--{long}={v}")]).is_ok();
            if operator != broker {
                mismatches.push(format!("{key}={v:?}: operator {operator}, broker {broker}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[test]
fn keys_the_issue_found_refused_are_accepted() {
    for key in [
        "min.insync.replicas",
        "unclean.leader.election.enable",
        "offsets.topic.replication.factor",
    ] {
        assert!(broker_key(key).is_some(), "{key}");
    }
}

#[test]
fn topic_config_keys_are_the_brokers() {
    let broker: BTreeSet<&str> = rivulet_broker::topic_config::TOPIC_CONFIGS
        .iter()
        .map(|d| d.name)
        .collect();
    let operator: BTreeSet<&str> = TOPIC_CONFIG_KEYS.iter().copied().collect();
    let scaling: BTreeSet<&str> = TOPIC_CONFIGS_SET_BY_SCALING.iter().copied().collect();
    assert!(operator.is_disjoint(&scaling));
    assert_eq!(&operator | &scaling, broker);
}

/// The first column of the markdown table that follows `heading` in docs/operator.md, and the
/// second column (backquoted values stripped of their quotes).
fn doc_table(heading: &str) -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operator.md");
    let doc = std::fs::read_to_string(path).expect("docs/operator.md");
    let from = doc
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} in docs/operator.md"));
    doc[from..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<String> = row.split('|').map(|c| c.trim().to_string()).collect();
            let first = cells
                .get(1)
                .cloned()
                .unwrap_or_default()
                .trim_matches('`')
                .to_string();
            let second = cells
                .get(2)
                .and_then(|c| c.split('`').nth(1))
                .unwrap_or_default()
                .to_string();
            (first, second)
        })
        .collect()
}

#[test]
fn docs_list_exactly_the_accepted_keys() {
    let docs: BTreeSet<(String, String)> = doc_table("<!-- broker-config-keys -->")
        .into_iter()
        .collect();
    let code: BTreeSet<(String, String)> = BROKER_CONFIG_KEYS
        .iter()
        .map(|(k, e, _)| (k.to_string(), e.to_string()))
        .collect();
    assert_eq!(
        docs, code,
        "docs/operator.md's broker config table vs BROKER_CONFIG_KEYS"
    );
    let docs: BTreeSet<String> = doc_table("<!-- topic-config-keys -->")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let code: BTreeSet<String> = TOPIC_CONFIG_KEYS.iter().map(|k| k.to_string()).collect();
    assert_eq!(
        docs, code,
        "docs/operator.md's topic config table vs TOPIC_CONFIG_KEYS"
    );
}
