//! The gateway configuration front end against arbitrary text.
//!
//! Oracle: no panic; a rejected text gives a `ConfigError` with a non-empty message that
//! names the inline source, is not an I/O error, and carries a 1-based location when it
//! has one.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wasmbridge_config::Config;

fuzz_target!(|text: &str| {
    let source = Path::new("<fuzz>");
    let Err(err) = Config::from_yaml_str(text, source, Path::new(".")) else {
        return;
    };
    assert!(!err.message().is_empty(), "empty message: {err:?}");
    assert!(!err.to_string().is_empty(), "empty display: {err:?}");
    assert_eq!(err.file(), source, "error names another file: {err:?}");
    assert!(!err.is_io(), "no file was read, yet an I/O error: {err:?}");
    if let Some((line, column)) = err.location() {
        assert!(line >= 1 && column >= 1, "location is not 1-based: {err:?}");
    }
});
