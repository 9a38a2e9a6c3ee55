//! `docs/support.md` is generated from the catalogue; this test fails when it is stale.
//! Regenerate with `WASMBRIDGE_BLESS=1 cargo test -p wasmbridge-abi --test support_doc`.

use std::path::PathBuf;

fn generated() -> String {
    format!(
        "# Hostcall support\n\nGenerated from the catalogue in `module/abi` (`support_table_markdown`); do not edit by hand.\nRegenerate with `WASMBRIDGE_BLESS=1 cargo test -p wasmbridge-abi --test support_doc`.\n\n{}",
        wasmbridge_abi::support_table_markdown()
    )
}

#[test]
fn docs_support_table_matches_the_catalogue() {
    let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run under cargo test"))
        .join("../../docs/support.md");
    let want = generated();
    if std::env::var_os("WASMBRIDGE_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write docs/support.md");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/support.md is stale; regenerate with WASMBRIDGE_BLESS=1 cargo test -p wasmbridge-abi --test support_doc"
    );
}
