//! The container files in `docker/` (no Docker engine runs here): the image's configuration
//! passes `wasmbridge check` with the filters the image carries, and the Dockerfile and the
//! compose file refer only to what exists.

use wasmbridge_e2e::{filters_dir, repo_root, scratch, wasmbridge};

#[test]
fn the_container_configuration_is_valid_with_the_filters_the_image_carries() {
    let dir = scratch("docker-config");
    // The image puts the Rust filters in /etc/wasmbridge/filters beside the file.
    std::fs::create_dir_all(dir.join("filters")).expect("mkdir");
    for entry in std::fs::read_dir(filters_dir()).expect("built filters") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "wasm") {
            std::fs::copy(
                &path,
                dir.join("filters").join(path.file_name().expect("name")),
            )
            .expect("copy");
        }
    }
    let yaml = std::fs::read_to_string(repo_root().join("docker/gateway.yaml")).expect("read");
    // `upstream` resolves inside compose only; the cache directory is the image's.
    let yaml = yaml.replace("upstream:80", "127.0.0.1:80").replace(
        "/var/cache/wasmbridge",
        &dir.join("cache").display().to_string(),
    );
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, yaml).expect("write");
    let out = wasmbridge(&["check", &file.display().to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("plugin add_header"), "{stdout}");
}

#[test]
fn the_dockerfile_and_compose_file_refer_only_to_what_exists() {
    let root = repo_root();
    let dockerfile = std::fs::read_to_string(root.join("docker/Dockerfile")).expect("read");
    let mut copied = 0;
    for line in dockerfile.lines().map(str::trim) {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from=") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                root.join(source).exists(),
                "COPY {source}: not in the repository"
            );
            copied += 1;
        }
    }
    assert!(copied >= 6, "{copied} sources copied");
    // The filters build with --locked.
    assert!(root.join("filters/Cargo.lock").exists());
    // The entry point is the binary the gateway crate builds.
    let manifest = std::fs::read_to_string(root.join("adapters/pingora/Cargo.toml")).expect("read");
    assert!(manifest.contains("name = \"wasmbridge\""));
    assert!(dockerfile.contains("ENTRYPOINT [\"wasmbridge\"]"));
    assert!(
        dockerfile.contains("USER 10001"),
        "the runtime image runs unprivileged"
    );

    let compose = std::fs::read_to_string(root.join("docker/compose.yaml")).expect("read");
    let compose: serde_yaml::Value = serde_yaml::from_str(&compose).expect("compose is YAML");
    let build = &compose["services"]["gateway"]["build"];
    let context = root
        .join("docker")
        .join(build["context"].as_str().expect("context"));
    assert!(
        context
            .join(build["dockerfile"].as_str().expect("dockerfile"))
            .exists()
    );
    assert!(compose["services"]["upstream"]["image"].is_string());

    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect("read");
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "the build context leaves target/ out"
    );
}
