//! The checked-in CRD YAML and the field reference must match what the Rust types generate.

use std::path::PathBuf;

use rivulet_operator::crdgen::{crd_yaml, crds, reference_markdown};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn checked_in_crds_match_generated() {
    for dir in ["crds", "charts/rivulet-operator/crds"] {
        for (file, crd) in crds() {
            let path = root().join(dir).join(&file);
            let want = crd_yaml(&crd).expect("render CRD");
            assert!(
                read(&path) == want,
                "{} is out of date with operator/src/crd.rs: run `make crds`",
                path.display()
            );
        }
    }
}

#[test]
fn crd_reference_matches_schema() {
    let path = root().join("docs/crd-reference.md");
    assert!(
        read(&path) == reference_markdown(),
        "docs/crd-reference.md drifted from the CRD schemas: run `make crds`"
    );
}

#[test]
fn reference_documents_every_spec_field() {
    let doc = reference_markdown();
    for field in [
        "spec.zones",
        "spec.brokersPerZone",
        "spec.brokerType",
        "spec.storage.autoscaling.targetUtilizationPercent",
        "spec.storage.autoscaling.cooldown",
        "spec.config",
        "spec.clusterRef.name",
        "spec.deletionPolicy",
        "status.bootstrapAddress",
    ] {
        assert!(
            doc.contains(&format!("`{field}`")),
            "{field} missing from the reference"
        );
    }
}

#[test]
fn schemas_carry_cel_rules_and_descriptions() {
    let all: String = crds()
        .iter()
        .map(|(_, c)| crd_yaml(c).expect("render"))
        .collect();
    assert!(all.contains("zones are append-only"));
    assert!(all.contains("storage.size can't decrease"));
    assert!(all.contains("topicName is immutable"));
    assert!(all.contains("subresources"));
}
