//! Table tests of validation: each bad spec gets its own message.

mod fixtures;

use rivulet_operator::crd::KafkaClusterStatus;
use rivulet_operator::validate::validate_cluster;

type Mutation = fn(&mut rivulet_operator::crd::KafkaCluster);

#[test]
fn good_cluster_is_valid() {
    let kc = fixtures::three_zone_cluster();
    assert_eq!(
        validate_cluster("demo", &kc.spec, None),
        Vec::<String>::new()
    );
}

#[test]
fn each_bad_spec_gets_its_own_message() {
    let cases: Vec<(&str, Mutation, &str)> = vec![
        ("no zones", |k| k.spec.zones.clear(), "at least one zone"),
        (
            "bad zone",
            |k| k.spec.zones[0] = "Bad Zone!".into(),
            "not a valid zone label",
        ),
        (
            "dup zone",
            |k| k.spec.zones[1] = "eu-west-1a".into(),
            "listed twice",
        ),
        (
            "zero brokers",
            |k| k.spec.brokers_per_zone = 0,
            "brokersPerZone must be between 1 and 999",
        ),
        (
            "too many brokers",
            |k| k.spec.brokers_per_zone = 1000,
            "brokersPerZone must be between 1 and 999",
        ),
        (
            "tiny throttle",
            |k| {
                k.spec.scaling = Some(rivulet_operator::crd::ScalingSpec {
                    rebalance_on_scale_out: true,
                    throttle_bytes_per_second: 10,
                })
            },
            "throttleBytesPerSecond must be at least 1024",
        ),
        (
            "bad size",
            |k| k.spec.storage.size = "lots".into(),
            "not a storage quantity",
        ),
        (
            "tiny size",
            |k| k.spec.storage.size = "4Mi".into(),
            "below the 8Mi minimum",
        ),
        (
            "target",
            |k| {
                k.spec
                    .storage
                    .autoscaling
                    .as_mut()
                    .unwrap()
                    .target_utilization_percent = 85
            },
            "targetUtilizationPercent must be 10-80",
        ),
        (
            "max below size",
            |k| k.spec.storage.autoscaling.as_mut().unwrap().max_size = "50Gi".into(),
            "maxSize \"50Gi\" is below",
        ),
        (
            "max above 16Ti",
            |k| k.spec.storage.autoscaling.as_mut().unwrap().max_size = "17Ti".into(),
            "above the 16Ti per-broker limit",
        ),
        (
            "critical below target",
            |k| {
                k.spec
                    .storage
                    .autoscaling
                    .as_mut()
                    .unwrap()
                    .critical_utilization_percent = 50
            },
            "criticalUtilizationPercent must be above",
        ),
        (
            "margin",
            |k| k.spec.storage.autoscaling.as_mut().unwrap().margin_percent = 60,
            "marginPercent must be 0-50",
        ),
        (
            "check interval",
            |k| k.spec.storage.autoscaling.as_mut().unwrap().check_interval = "0s".into(),
            "checkInterval \"0s\"",
        ),
        (
            "horizon",
            |k| {
                k.spec
                    .storage
                    .autoscaling
                    .as_mut()
                    .unwrap()
                    .prediction_horizon = Some("later".into())
            },
            "predictionHorizon \"later\"",
        ),
        (
            "min increment",
            |k| k.spec.storage.autoscaling.as_mut().unwrap().min_increment = "0".into(),
            "minIncrement",
        ),
        (
            "increment percent",
            |k| {
                k.spec
                    .storage
                    .autoscaling
                    .as_mut()
                    .unwrap()
                    .increment_percent = 0
            },
            "incrementPercent must be 1-100",
        ),
        (
            "cooldown",
            |k| k.spec.storage.autoscaling.as_mut().unwrap().cooldown = "soon".into(),
            "cooldown \"soon\"",
        ),
        (
            "coordinator replicas",
            |k| k.spec.coordinator.replicas = 3,
            "coordinator.replicas must be 1",
        ),
        (
            "coordinator size",
            |k| k.spec.coordinator.storage_size = "x".into(),
            "coordinator.storageSize",
        ),
        (
            "owned key",
            |k| {
                k.spec.config.insert("broker.id".into(), "7".into());
            },
            "set by the operator",
        ),
        (
            "owned listeners",
            |k| {
                k.spec
                    .config
                    .insert("advertised.listeners".into(), "x".into());
            },
            "set by the operator",
        ),
        (
            "unknown key",
            |k| {
                k.spec
                    .config
                    .insert("log.cleaner.enable".into(), "true".into());
            },
            "not a supported broker setting",
        ),
        (
            "bad bool",
            |k| {
                k.spec
                    .config
                    .insert("auto.create.topics.enable".into(), "yes".into());
            },
            "expected true or false",
        ),
        (
            "bad int",
            |k| {
                k.spec.config.insert("num.partitions".into(), "0".into());
            },
            "expected an integer from 1 to 100000",
        ),
        (
            "min.insync.replicas above the brokers",
            |k| {
                k.spec
                    .config
                    .insert("min.insync.replicas".into(), "7".into());
            },
            "exceeds the 6 brokers",
        ),
        (
            "rf too big",
            |k| {
                k.spec
                    .config
                    .insert("default.replication.factor".into(), "7".into());
            },
            "exceeds the 6 brokers",
        ),
    ];
    for (label, mutate, want) in cases {
        let mut kc = fixtures::three_zone_cluster();
        mutate(&mut kc);
        let errs = validate_cluster("demo", &kc.spec, None);
        assert_eq!(
            errs.len(),
            1,
            "{label}: expected exactly one error, got {errs:?}"
        );
        assert!(
            errs[0].contains(want),
            "{label}: {:?} lacks {want:?}",
            errs[0]
        );
    }
}

#[test]
fn lowering_brokers_per_zone_is_accepted_because_it_drains() {
    let kc = fixtures::three_zone_cluster();
    let prev = KafkaClusterStatus {
        applied_zones: kc.spec.zones.clone(),
        applied_storage_size: Some("100Gi".into()),
        ..Default::default()
    };
    let mut lower = kc.clone();
    lower.spec.brokers_per_zone = 1;
    assert!(validate_cluster("demo", &lower.spec, Some(&prev)).is_empty());
}

#[test]
fn long_name_is_refused() {
    let kc = fixtures::three_zone_cluster();
    let errs = validate_cluster(&"x".repeat(41), &kc.spec, None);
    assert!(errs[0].contains("longer than 40"), "{errs:?}");
}

#[test]
fn zones_are_append_only_and_storage_never_shrinks() {
    let kc = fixtures::three_zone_cluster();
    let prev = KafkaClusterStatus {
        applied_zones: kc.spec.zones.clone(),
        applied_storage_size: Some("100Gi".into()),
        ..Default::default()
    };
    let mut appended = kc.clone();
    appended.spec.zones.push("eu-west-1d".into());
    assert!(validate_cluster("demo", &appended.spec, Some(&prev)).is_empty());

    let mut reordered = kc.clone();
    reordered.spec.zones.swap(0, 1);
    let errs = validate_cluster("demo", &reordered.spec, Some(&prev));
    assert!(
        errs.iter().any(|e| e.contains("may only be appended")),
        "{errs:?}"
    );

    let mut removed = kc.clone();
    removed.spec.zones.pop();
    let errs = validate_cluster("demo", &removed.spec, Some(&prev));
    assert!(
        errs.iter().any(|e| e.contains("may only be appended")),
        "{errs:?}"
    );

    let mut shrunk = kc.clone();
    shrunk.spec.storage.size = "50Gi".into();
    let errs = validate_cluster("demo", &shrunk.spec, Some(&prev));
    assert!(errs.iter().any(|e| e.contains("can't shrink")), "{errs:?}");
}
