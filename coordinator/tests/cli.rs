//! `rivulet-coordinator --help` / an unknown flag: see `rivulet_testkit::assert_cli_contract`.
//! (The zkbench example checks its own parser in a unit test: `cargo test --all-targets`
//! builds examples as test binaries, so there is no plain zkbench to run from here.)

use std::path::Path;

#[test]
fn coordinator_cli_contract() {
    rivulet_testkit::assert_cli_contract(Path::new(env!("CARGO_BIN_EXE_rivulet-coordinator")));
}
