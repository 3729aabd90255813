//! `--help` / an unknown flag for rivulet-operator and crdgen (bench-operator, an example, checks
//! its own arguments in a unit test): see
//! `rivulet_testkit::assert_cli_contract`.

use std::path::Path;

use rivulet_testkit::{assert_cli_contract, run_in_empty_dir};

#[test]
fn operator_binaries_cli_contract() {
    for bin in [
        env!("CARGO_BIN_EXE_rivulet-operator"),
        env!("CARGO_BIN_EXE_crdgen"),
    ] {
        assert_cli_contract(Path::new(bin));
    }
}

/// crdgen once took its first argument, `--help` included, as the repository root
/// and wrote the CRDs under it; a real root still works.
#[test]
fn crdgen_writes_only_under_the_root_it_is_given() {
    let crdgen = Path::new(env!("CARGO_BIN_EXE_crdgen"));
    let (out, left) = run_in_empty_dir(crdgen, &["."]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut left = left;
    left.sort();
    assert_eq!(left, ["charts", "crds", "docs"]);
    let (out, left) = run_in_empty_dir(crdgen, &[".", "extra"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(left.is_empty(), "{left:?}");
}
