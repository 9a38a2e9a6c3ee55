//! The generated pages `docs/support.md` and `docs/conformance.md` must match what the
//! catalogue, the cases, `known_failures.yaml` and the adapters' limits render; this test
//! fails when one is stale. Regenerate both with
//! `WASMBRIDGE_BLESS=1 cargo test -p wasmbridge-conformance --test docs`.
//!
//! Needs neither the filters nor the gateway binary: it reads data only.

use wasmbridge_conformance::docs::{
    AdapterLimits, CONFORMANCE_PAGE, REGENERATE, SUPPORT_PAGE, callback_claims, conformance_page,
    support_page,
};
use wasmbridge_conformance::{Case, KnownFailures, load_cases, suite_dir, targets};

fn cases() -> Vec<Case> {
    load_cases(&suite_dir().join("cases")).expect("loading cases")
}

fn adapters() -> [AdapterLimits<'static>; 1] {
    [AdapterLimits {
        adapter: wasmbridge_pingora::limits::ADAPTER,
        limits: wasmbridge_pingora::limits::LIMITS,
    }]
}

/// Compares `page` (relative to the repository root) with `want`, or rewrites it under
/// `WASMBRIDGE_BLESS`.
fn check_page(page: &str, want: &str) {
    let path = wasmbridge_e2e::repo_root().join(page);
    if std::env::var_os("WASMBRIDGE_BLESS").is_some() {
        std::fs::write(&path, want).unwrap_or_else(|e| panic!("writing {page}: {e}"));
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        panic!(
            "{page} is stale (first difference at line {}); regenerate it with {REGENERATE}",
            line + 1
        );
    }
}

#[test]
fn support_page_is_current() {
    let page = support_page(&cases(), &adapters()).unwrap_or_else(|e| panic!("{e}"));
    check_page(SUPPORT_PAGE, &page);
}

#[test]
fn conformance_page_is_current() {
    let known = KnownFailures::load(&suite_dir()).expect("known_failures.yaml");
    let names: Vec<&str> = targets().iter().map(|t| t.name()).collect();
    check_page(
        CONFORMANCE_PAGE,
        &conformance_page(&cases(), &known, &names),
    );
}

/// The catalogue says which callbacks the host calls; the cases must agree.
#[test]
fn callback_claims_match_the_cases() {
    let wrong = callback_claims(&cases());
    assert!(wrong.is_empty(), "{wrong:#?}");
}
