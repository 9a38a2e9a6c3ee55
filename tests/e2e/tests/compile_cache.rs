//! The compile cache across restarts of the real gateway: the first start compiles the
//! filter and writes the entry, the next one loads it, and after the entry is damaged a
//! start warns, compiles again, replaces it and serves as before.

use std::path::{Path, PathBuf};

use wasmbridge_e2e::{Gateway, Proto, Upstream, filter, get, sample, scrape, scratch, send};

fn yaml(cache: &Path) -> String {
    format!(
        r#"
server: {{threads: 1, compile_cache: "{}"}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters: [{{name: backend, endpoints: ["{{upstream}}"]}}]
plugins:
  - name: add_header
    root_id: add_header
    module: {}
    configuration: {{headers: {{x-hello: wasmbridge}}}}
routes:
  - match: {{prefix: /}}
    cluster: backend
    plugins: [add_header]
"#,
        cache.display(),
        filter("add_header")
    )
}

/// The one entry in the cache directory.
fn entry(cache: &Path) -> anyhow::Result<PathBuf> {
    let entries: Vec<PathBuf> = std::fs::read_dir(cache)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(entries.len() == 1, "one entry, found {entries:?}");
    Ok(entries[0].clone())
}

/// Checks that the gateway proxies through the filter, and returns its
/// `wasmbridge_compile_cache_total` counts as (hit, miss, corrupt, write_error).
async fn serves(gw: &Gateway) -> anyhow::Result<[u64; 4]> {
    let reply = send(gw.addr, Proto::H1, get(&gw.url("/"), &[])).await?;
    anyhow::ensure!(reply.status == 200, "{}: {}", reply.status, gw.log_text());
    anyhow::ensure!(reply.header("x-hello") == "wasmbridge", "{}", gw.log_text());
    anyhow::ensure!(reply.header("x-upstream") == "echo");
    let text = scrape(gw).await?;
    let mut counts = [0; 4];
    for (count, outcome) in counts
        .iter_mut()
        .zip(["hit", "miss", "corrupt", "write_error"])
    {
        let name = format!("wasmbridge_compile_cache_total{{outcome=\"{outcome}\"}}");
        *count = sample(&text, &name)
            .ok_or_else(|| anyhow::anyhow!("no {name} in\n{text}"))?
            .parse()?;
    }
    Ok(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_the_filter_from_the_compile_cache() -> anyhow::Result<()> {
    let upstream = Upstream::start().await;
    let cache = scratch("compile-cache").join("cache");
    let yaml = yaml(&cache);

    // First start: nothing cached yet.
    let gw = Gateway::start("compile-cache-1", &yaml, Some(upstream.addr)).await?;
    let log = gw.log_text();
    assert!(log.contains("module compiled"), "{log}");
    assert!(log.contains("cache=\"miss\""), "{log}");
    assert_eq!(serves(&gw).await?, [0, 1, 0, 0]);
    drop(gw);
    let entry = entry(&cache)?;

    // A restart loads the module.
    let gw = Gateway::start("compile-cache-2", &yaml, Some(upstream.addr)).await?;
    let log = gw.log_text();
    assert!(
        log.contains("module loaded from the compile cache"),
        "{log}"
    );
    assert!(log.contains("took_ms="), "{log}");
    assert!(!log.contains("module compiled"), "{log}");
    assert_eq!(serves(&gw).await?, [1, 0, 0, 0]);
    drop(gw);

    // A damaged entry: warned about by name, compiled again, replaced.
    let mut bytes = std::fs::read(&entry)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes)?;
    let gw = Gateway::start("compile-cache-3", &yaml, Some(upstream.addr)).await?;
    let log = gw.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("is corrupt"))
        .unwrap_or_else(|| panic!("no warning about the entry:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(&entry.display().to_string()), "{warning}");
    assert!(log.contains("cache=\"corrupt\""), "{log}");
    assert_eq!(serves(&gw).await?, [0, 0, 1, 0]);
    drop(gw);
    assert_ne!(std::fs::read(&entry)?, bytes, "the entry was rewritten");

    // The rewritten entry is good.
    let gw = Gateway::start("compile-cache-4", &yaml, Some(upstream.addr)).await?;
    let log = gw.log_text();
    assert!(
        log.contains("module loaded from the compile cache"),
        "{log}"
    );
    assert!(!log.contains("is corrupt"), "{log}");
    assert_eq!(serves(&gw).await?, [1, 0, 0, 0]);
    Ok(())
}
