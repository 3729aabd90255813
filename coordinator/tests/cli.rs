//! `--help` / an unknown flag for rivulet-coordinator and the zkbench example: see
//! `rivulet_testkit::assert_cli_contract`.

use std::path::{Path, PathBuf};

#[test]
fn coordinator_cli_contract() {
    rivulet_testkit::assert_cli_contract(Path::new(env!("CARGO_BIN_EXE_rivulet-coordinator")));
}

/// zkbench is an example: `cargo test --all-targets` (make test) builds it next to the
/// test binaries' deps/ directory; a narrower `cargo test --test cli` does not.
#[test]
fn zkbench_cli_contract() {
    let exe = std::env::current_exe().expect("current exe");
    let bin: PathBuf = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples/zkbench");
    if !bin.exists() {
        eprintln!(
            "SKIP: {} not built (cargo test --all-targets builds it)",
            bin.display()
        );
        return;
    }
    rivulet_testkit::assert_cli_contract(&bin);
}
