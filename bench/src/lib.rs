//! Side-by-side benchmarks: each scenario is measured next to a baseline
//! taken in the same run, and reported as a ratio. What every bench
//! shares: the shop's binary in processes of its own ([`shop`]), the load
//! ([`load`]) and the bare servers that give the ceilings ([`bare`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bare;
pub mod load;
pub mod shop;

pub use load::{Wrk, row, wrk};
pub use shop::{binary, spawn};

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether `tool --version` runs.
pub fn installed(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

pub fn rss_mib(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<f64>()
        .ok()
        .map(|kib| kib / 1024.0)
}

/// The value at fraction `p` (0 to 1) of `sorted`; NaN when it is empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
