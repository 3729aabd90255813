//! `rivulet-broker --help` / an unknown flag: see `rivulet_testkit::assert_cli_contract`.

use std::path::Path;

#[test]
fn broker_cli_contract() {
    rivulet_testkit::assert_cli_contract(Path::new(env!("CARGO_BIN_EXE_rivulet-broker")));
}
