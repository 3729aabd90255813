//! Pure checks of a KafkaCluster spec that the schema can't express (or that must also hold
//! when the API server runs without CEL). Each problem gets its own message.

use crate::crd::{KafkaClusterSpec, KafkaClusterStatus};
use crate::presets::{broker_key, check_value, BROKER_CONFIG_KEYS, OPERATOR_OWNED_KEYS};
use crate::quantity::{parse_bytes, parse_duration_secs};

/// Longest cluster name: object names derived from it must stay within Kubernetes' limits
/// (a StatefulSet name plus its revision hash must fit a 63-character label).
pub const MAX_CLUSTER_NAME: usize = 40;
/// Broker ids are `zoneIndex * ZONE_ID_STRIDE + ordinal`, so a zone holds at most this many.
pub const ZONE_ID_STRIDE: i32 = 1000;
/// Smallest broker volume: small enough for test beds whose volumes are tmpfs mounts.
pub const MIN_STORAGE_BYTES: u128 = 8 << 20;
/// Largest broker volume autoscaling may reach (Amazon MSK's per-broker limit).
pub const MAX_STORAGE_BYTES: u128 = 16 << 40;

fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Returns every problem found; empty means valid.
pub fn validate_cluster(
    name: &str,
    spec: &KafkaClusterSpec,
    previous: Option<&KafkaClusterStatus>,
) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > MAX_CLUSTER_NAME {
        errs.push(format!(
            "metadata.name {name:?} is longer than {MAX_CLUSTER_NAME} characters"
        ));
    }

    errs.extend(crate::security::listeners::validate(spec));
    if spec.zones.is_empty() {
        errs.push("spec.zones must list at least one zone".into());
    }
    for (i, z) in spec.zones.iter().enumerate() {
        if !is_label_value(z) {
            errs.push(format!(
                "spec.zones[{i}] {z:?} is not a valid zone label value"
            ));
        }
        if spec.zones[..i].contains(z) {
            errs.push(format!("spec.zones[{i}] {z:?} is listed twice"));
        }
    }
    if let Some(prev) = previous {
        let applied = &prev.applied_zones;
        let kept = applied.len() <= spec.zones.len()
            && applied.iter().zip(&spec.zones).all(|(a, b)| a == b);
        if !kept {
            errs.push(format!(
                "spec.zones may only be appended to: was {:?}, now {:?}",
                applied, spec.zones
            ));
        }
    }

    if !(1..ZONE_ID_STRIDE).contains(&spec.brokers_per_zone) {
        errs.push(format!(
            "spec.brokersPerZone must be between 1 and {}, got {}",
            ZONE_ID_STRIDE - 1,
            spec.brokers_per_zone
        ));
    }

    match parse_bytes(&spec.storage.size) {
        None => errs.push(format!(
            "spec.storage.size {:?} is not a storage quantity",
            spec.storage.size
        )),
        Some(size) => {
            if size < MIN_STORAGE_BYTES {
                errs.push(format!(
                    "spec.storage.size {:?} is below the 8Mi minimum",
                    spec.storage.size
                ));
            }
            let applied = previous
                .and_then(|p| p.applied_storage_size.as_deref())
                .and_then(|a| parse_bytes(a).map(|b| (a, b)));
            if let Some((a, before)) = applied {
                if size < before {
                    errs.push(format!(
                        "spec.storage.size can't shrink: {a} is in use, {:?} asked",
                        spec.storage.size
                    ));
                }
            }
            if let Some(auto) = &spec.storage.autoscaling {
                if !(10..=80).contains(&auto.target_utilization_percent) {
                    errs.push(format!(
                        "spec.storage.autoscaling.targetUtilizationPercent must be 10-80, got {}",
                        auto.target_utilization_percent
                    ));
                }
                match parse_bytes(&auto.max_size) {
                    None => errs.push(format!(
                        "spec.storage.autoscaling.maxSize {:?} is not a storage quantity",
                        auto.max_size
                    )),
                    Some(max) if max < size => errs.push(format!(
                        "spec.storage.autoscaling.maxSize {:?} is below spec.storage.size {:?}",
                        auto.max_size, spec.storage.size
                    )),
                    Some(max) if max > MAX_STORAGE_BYTES => errs.push(format!(
                        "spec.storage.autoscaling.maxSize {:?} is above the 16Ti per-broker limit",
                        auto.max_size
                    )),
                    Some(_) => {}
                }
                if auto.critical_utilization_percent <= auto.target_utilization_percent
                    || auto.critical_utilization_percent > 99
                {
                    errs.push(format!(
                        "spec.storage.autoscaling.criticalUtilizationPercent must be above targetUtilizationPercent ({}) and at most 99, got {}",
                        auto.target_utilization_percent, auto.critical_utilization_percent
                    ));
                }
                if !(0..=50).contains(&auto.margin_percent)
                    || auto.margin_percent >= auto.target_utilization_percent
                {
                    errs.push(format!(
                        "spec.storage.autoscaling.marginPercent must be 0-50 and below targetUtilizationPercent, got {}",
                        auto.margin_percent
                    ));
                }
                if parse_duration_secs(&auto.check_interval).is_none_or(|s| s == 0) {
                    errs.push(format!(
                        "spec.storage.autoscaling.checkInterval {:?} is not a positive duration like 60s",
                        auto.check_interval
                    ));
                }
                if let Some(h) = &auto.prediction_horizon {
                    if parse_duration_secs(h).is_none() {
                        errs.push(format!(
                            "spec.storage.autoscaling.predictionHorizon {h:?} is not a duration like 15m"
                        ));
                    }
                }
                if parse_bytes(&auto.min_increment).is_none_or(|b| b == 0) {
                    errs.push(format!(
                        "spec.storage.autoscaling.minIncrement {:?} is not a positive storage quantity",
                        auto.min_increment
                    ));
                }
                if !(1..=100).contains(&auto.increment_percent) {
                    errs.push(format!(
                        "spec.storage.autoscaling.incrementPercent must be 1-100, got {}",
                        auto.increment_percent
                    ));
                }
                if parse_duration_secs(&auto.cooldown).is_none() {
                    errs.push(format!(
                        "spec.storage.autoscaling.cooldown {:?} is not a duration like 6h or 30m",
                        auto.cooldown
                    ));
                }
            }
        }
    }

    if spec.coordinator.replicas != 1 {
        errs.push(format!(
            "spec.coordinator.replicas must be 1 for now (a replicated coordinator is not implemented yet), got {}",
            spec.coordinator.replicas
        ));
    }
    if parse_bytes(&spec.coordinator.storage_size).is_none() {
        errs.push(format!(
            "spec.coordinator.storageSize {:?} is not a storage quantity",
            spec.coordinator.storage_size
        ));
    }

    if let Some(sc) = &spec.scaling {
        if sc.throttle_bytes_per_second < 1024 {
            errs.push(format!(
                "spec.scaling.throttleBytesPerSecond must be at least 1024, got {}",
                sc.throttle_bytes_per_second
            ));
        }
    }

    let total_brokers = spec.zones.len() as i64 * spec.brokers_per_zone as i64;
    for (key, value) in &spec.config {
        if OPERATOR_OWNED_KEYS.contains(&key.as_str()) {
            errs.push(format!(
                "spec.config[{key:?}] is set by the operator and can't be overridden"
            ));
            continue;
        }
        let Some((_, kind)) = broker_key(key) else {
            let known: Vec<&str> = BROKER_CONFIG_KEYS.iter().map(|(k, _, _)| *k).collect();
            errs.push(format!(
                "spec.config[{key:?}] is not a supported broker setting (supported: {})",
                known.join(", ")
            ));
            continue;
        };
        if let Err(why) = check_value(kind, value) {
            errs.push(format!("spec.config[{key:?}] = {value:?}: {why}"));
            continue;
        }
        // Replica counts above the brokers there are can never be met.
        if key == "default.replication.factor" || key == "min.insync.replicas" {
            if let Ok(n) = value.parse::<i64>() {
                if total_brokers > 0 && n > total_brokers {
                    errs.push(format!(
                        "spec.config[{key:?}] = {n} exceeds the {total_brokers} brokers of the cluster"
                    ));
                }
            }
        }
    }
    errs
}
