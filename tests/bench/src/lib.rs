//! What `make bench` writes: markdown tables and SVG bar charts for `docs/benchmarks/`.
//!
//! Two programs use it: `wasmbridge-bench-report`, which turns criterion's estimates into
//! the micro-benchmark page, and `wasmbridge-load`, which runs the loopback load benchmark
//! and writes its page.

pub mod chart;
pub mod criterion;
pub mod environment;
pub mod load;
