//! Runs every conformance case against every target: one trial per case × target, named
//! `<target>::<case id>`. Expected failures come from `known_failures.yaml`; a listed
//! case that passes fails the run, so the list cannot go stale.

use std::collections::BTreeSet;

use libtest_mimic::{Arguments, Failed, Trial};
use wasmbridge_conformance::known::{CATALOGUE, COVERAGE};
use wasmbridge_conformance::{
    Case, KnownFailures, Target, check, coverage, load_cases, suite_dir, targets,
};

fn main() {
    let mut args = Arguments::from_args();
    // Gateway trials mostly wait on sockets and child processes; run more than one per core.
    if args.test_threads.is_none() {
        args.test_threads = Some(6);
    }
    let dir = suite_dir();
    let cases = load_cases(&dir.join("cases")).unwrap_or_else(|e| panic!("loading cases: {e:#}"));
    let known = KnownFailures::load(&dir).unwrap_or_else(|e| panic!("{e:#}"));

    let targets = targets();
    let mut trials = Vec::new();
    let ids: BTreeSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    let mut stale = Vec::new();
    for (target, listed) in &known.0 {
        for id in listed.keys() {
            if !ids.contains(id.as_str()) && target != COVERAGE {
                stale.push(format!("{target}: {id}"));
            }
        }
    }
    trials.push(Trial::test(
        "suite::known_failures_name_real_cases",
        move || {
            if stale.is_empty() {
                Ok(())
            } else {
                Err(format!("known_failures.yaml lists cases that do not exist: {stale:?}").into())
            }
        },
    ));
    let mut available = Vec::new();
    for target in &targets {
        match target.unavailable() {
            None => available.push(target.clone()),
            Some(reason) => {
                let name = format!("{}::SKIPPED", target.name());
                trials.push(Trial::test(name.clone(), move || {
                    eprintln!("SKIPPED: {name}: {reason}");
                    Ok(())
                }));
            }
        }
    }
    for case in &cases {
        for target in &available {
            let reason = known.reason(target.name(), &case.id).map(str::to_string);
            let case = case.clone();
            let target = target.clone();
            let name = format!("{}::{}", target.name(), case.id);
            trials.push(Trial::test(name, move || trial(&*target, &case, reason)));
        }
    }
    let coverage_reason = known.reason(COVERAGE, CATALOGUE).map(str::to_string);
    let all = cases.clone();
    trials.push(Trial::test(format!("{COVERAGE}::{CATALOGUE}"), move || {
        expect(catalogue_coverage(&all), coverage_reason)
    }));
    libtest_mimic::run(&args, trials).exit();
}

fn trial(target: &dyn Target, case: &Case, known: Option<String>) -> Result<(), Failed> {
    let result = match target.run(case) {
        Ok(seen) => {
            let bad = check(case, &seen);
            if bad.is_empty() {
                Ok(())
            } else {
                Err(bad.join("\n"))
            }
        }
        Err(e) => Err(format!("could not run: {e:#}")),
    };
    expect(result, known)
}

/// Applies a known-failure entry: a listed failure passes, a listed pass fails.
fn expect(result: Result<(), String>, known: Option<String>) -> Result<(), Failed> {
    match (result, known) {
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(e.into()),
        (Err(_), Some(_)) => Ok(()),
        (Ok(()), Some(reason)) => Err(format!(
            "listed in known_failures.yaml ({reason}) but passes: remove the entry"
        )
        .into()),
    }
}

/// Every `proxy_*` hostcall of the catalogue must be called by some case: by name in a
/// probe step (`call: get_header_map_value`) or imported by an inline WAT module.
fn catalogue_coverage(cases: &[Case]) -> Result<(), String> {
    let missing = coverage::uncalled_hostcalls(cases);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("catalogue entries without a case: {missing:?}"))
    }
}
