//! Criterion's results as criterion 0.7 leaves them: under `<target>/criterion/`, each
//! benchmark's directory holds `new/benchmark.json` (its id) and `new/estimates.json`
//! (the estimates of its last run, in nanoseconds per iteration).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Deserialize;

/// The figures of one benchmark, in nanoseconds per iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub median: f64,
    /// The 95 % confidence interval of the median.
    pub median_low: f64,
    pub median_high: f64,
    pub mean: f64,
}

#[derive(Deserialize)]
struct Id {
    full_id: String,
}

#[derive(Deserialize)]
struct Estimates {
    mean: Statistic,
    median: Statistic,
}

#[derive(Deserialize)]
struct Statistic {
    point_estimate: f64,
    confidence_interval: Interval,
}

#[derive(Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

/// Every benchmark found under `dir` (criterion's output directory), by full id
/// (`group/function`). A missing directory is an empty result, not an error.
pub fn read_all(dir: &Path) -> Result<BTreeMap<String, Estimate>> {
    let mut found = BTreeMap::new();
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|name| name == "new") {
                if let Some((id, estimate)) = read_one(&path)? {
                    found.insert(id, estimate);
                }
            } else if path
                .file_name()
                .is_some_and(|name| name != "base" && name != "report")
            {
                pending.push(path);
            }
        }
    }
    Ok(found)
}

fn read_one(dir: &Path) -> Result<Option<(String, Estimate)>> {
    let id_path = dir.join("benchmark.json");
    let estimates_path = dir.join("estimates.json");
    if !id_path.exists() || !estimates_path.exists() {
        return Ok(None);
    }
    let id: Id = serde_json::from_slice(&std::fs::read(&id_path)?)
        .with_context(|| format!("{}", id_path.display()))?;
    let estimates: Estimates = serde_json::from_slice(&std::fs::read(&estimates_path)?)
        .with_context(|| format!("{}", estimates_path.display()))?;
    Ok(Some((
        id.full_id,
        Estimate {
            median: estimates.median.point_estimate,
            median_low: estimates.median.confidence_interval.lower_bound,
            median_high: estimates.median.confidence_interval.upper_bound,
            mean: estimates.mean.point_estimate,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_median_of_each_benchmark_by_its_full_id() {
        let dir = std::env::temp_dir().join(format!("wasmbridge-bench-{}", std::process::id()));
        let new = dir.join("group/case_a/new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::create_dir_all(dir.join("group/case_a/base")).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"group","function_id":"case/a","full_id":"group/case/a"}"#,
        )
        .unwrap();
        let statistic = |value: f64| {
            format!(
                r#"{{"point_estimate":{value},"standard_error":1.0,"confidence_interval":{{"confidence_level":0.95,"lower_bound":{},"upper_bound":{}}}}}"#,
                value - 1.0,
                value + 1.0
            )
        };
        std::fs::write(
            new.join("estimates.json"),
            format!(
                r#"{{"mean":{},"median":{},"std_dev":{}}}"#,
                statistic(12.0),
                statistic(10.0),
                statistic(2.0)
            ),
        )
        .unwrap();
        let found = read_all(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found.get("group/case/a"),
            Some(&Estimate {
                median: 10.0,
                median_low: 9.0,
                median_high: 11.0,
                mean: 12.0
            })
        );
        assert_eq!(found.len(), 1);
        assert!(read_all(Path::new("no/such/dir")).unwrap().is_empty());
    }
}
