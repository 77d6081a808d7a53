//! The run's results: every measurement by name, the machine it ran on,
//! and issue 24's table built from them (path, Emporium, baseline, ratio,
//! goal, met), printed and written to `--out` as JSON and markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use emporium_bench::Wrk;
use emporium_bench::load::Flows;
use serde_json::json;

/// One measurement.
#[derive(Clone, Debug)]
pub enum Measured {
    Wrk(Wrk),
    Flows(Flows),
    Value(f64),
    Series(Vec<f64>),
    Failed(String),
}

impl From<anyhow::Result<f64>> for Measured {
    fn from(result: anyhow::Result<f64>) -> Self {
        match result {
            Ok(v) => Measured::Value(v),
            Err(e) => Measured::Failed(format!("{e:#}")),
        }
    }
}

impl Measured {
    fn json(&self) -> serde_json::Value {
        match self {
            Measured::Wrk(w) => json!({
                "per_second": finite(w.rps), "p50_ms": finite(w.p50_ms), "p99_ms": finite(w.p99_ms),
                "requests": w.requests, "non_2xx": w.non_2xx, "socket_errors": w.socket_errors,
            }),
            Measured::Flows(f) => json!({
                "per_second": finite(f.per_second), "p50_ms": finite(f.p50_ms), "p99_ms": finite(f.p99_ms),
                "flows": f.flows, "failed": f.failed, "first_failure": f.first_failure,
            }),
            Measured::Value(v) => json!(finite(*v)),
            Measured::Series(v) => json!({ "values": v, "median": finite(median(v)) }),
            Measured::Failed(e) => json!({ "failed": e }),
        }
    }

    /// Its figures in one line, for the markdown's list.
    fn line(&self) -> String {
        match self {
            Measured::Wrk(w) => format!(
                "{:.1}/s, p50 {:.2} ms, p99 {:.2} ms, {} requests{}",
                w.rps,
                w.p50_ms,
                w.p99_ms,
                w.requests,
                wrk_errors(w)
            ),
            Measured::Flows(f) => format!(
                "{:.1} flows/s, p50 {:.1} ms, p99 {:.1} ms, {} flows, {} failed{}",
                f.per_second,
                f.p50_ms,
                f.p99_ms,
                f.flows,
                f.failed,
                f.first_failure
                    .as_ref()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            ),
            Measured::Value(v) => format!("{v:.2}"),
            Measured::Series(v) => format!(
                "{} (median {:.0})",
                v.iter()
                    .map(|x| format!("{x:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                median(v)
            ),
            Measured::Failed(e) => format!("failed: {e}"),
        }
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some((v * 1000.0).round() / 1000.0)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    emporium_bench::percentile(&sorted, 0.5)
}

fn wrk_errors(w: &Wrk) -> String {
    if w.errors {
        format!(", {} non-2xx, {} socket errors", w.non_2xx, w.socket_errors)
    } else {
        String::new()
    }
}

/// The machine the run measured, as the table names it.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory: String,
    pub kernel: String,
    pub load: String,
    pub date: String,
    pub commit: String,
}

impl Machine {
    fn read(repo: &Path) -> Self {
        let file = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = file("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown CPU".to_owned(), |(_, v)| v.trim().to_owned());
        let kib: f64 = file("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let commit = std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["describe", "--always", "--dirty", "--abbrev=12"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map_or_else(
                || "unknown".to_owned(),
                |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            );
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory: format!("{:.1} GiB RAM", kib / 1024.0 / 1024.0),
            kernel: file("/proc/sys/kernel/osrelease").trim().to_owned(),
            load: file("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            commit,
        }
    }
}

/// Everything the run measured.
pub struct Results {
    pub machine: Machine,
    pub command: String,
    pub binary: String,
    measured: BTreeMap<String, Measured>,
    pub notes: Vec<String>,
    pub seconds: f64,
    /// The services `up`'s banner listed.
    pub up_services: Vec<String>,
    /// Customers checking out at once, and the connections of the other
    /// loads: the names of their measurements.
    pub customers: u64,
    pub connections: u64,
}

/// A row of the table.
struct Row {
    path: String,
    emporium: String,
    baseline: String,
    ratio: Option<f64>,
    goal: String,
    met: &'static str,
}

/// What a figure is held to.
#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
    None,
}

impl Goal {
    fn met(self, value: f64) -> &'static str {
        let holds = match self {
            Goal::AtMost(g) => value <= g,
            Goal::AtLeast(g) => value >= g,
            Goal::None => return "—",
        };
        if !value.is_finite() {
            "—"
        } else if holds {
            "yes"
        } else {
            "no"
        }
    }
}

/// 1 MB in MiB: the goals speak of MB.
const MB: f64 = 1_000_000.0 / 1_048_576.0;

impl Results {
    pub fn new(
        repo: &Path,
        binary: &Path,
        command: &str,
        (customers, connections): (u64, u64),
    ) -> Self {
        Self {
            machine: Machine::read(repo),
            command: command.to_owned(),
            binary: binary.display().to_string(),
            measured: BTreeMap::new(),
            notes: vec![],
            seconds: 0.0,
            up_services: vec![],
            customers,
            connections,
        }
    }

    pub fn put(&mut self, key: &str, measured: Measured) {
        self.measured.insert(key.to_owned(), measured);
    }

    pub fn has(&self, key: &str) -> bool {
        self.measured.contains_key(key)
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    fn get(&self, key: &str) -> Result<&Measured, String> {
        match self.measured.get(key) {
            Some(Measured::Failed(e)) => Err(format!("not measured: {e}")),
            Some(m) => Ok(m),
            None => Err("not measured (see the notes)".to_owned()),
        }
    }

    fn wrk(&self, key: &str) -> Result<&Wrk, String> {
        match self.get(key)? {
            Measured::Wrk(w) if w.rps.is_finite() => Ok(w),
            Measured::Wrk(_) => Err("not measured: wrk gave no figures".into()),
            _ => Err(format!("{key} is not a wrk run")),
        }
    }

    fn value(&self, key: &str) -> Result<f64, String> {
        match self.get(key)? {
            Measured::Value(v) => Ok(*v),
            Measured::Series(v) => Ok(median(v)),
            _ => Err(format!("{key} is not a value")),
        }
    }

    pub fn heading(&self) -> String {
        let m = &self.machine;
        format!(
            "{}, {} cores ({}), {}, Linux {}; load average at the start {}; commit {}; {:.0} s.\n`{}`",
            m.date,
            m.cores,
            m.cpu,
            m.memory,
            m.kernel,
            m.load,
            m.commit,
            self.seconds,
            self.command
        )
    }

    fn rows(&self) -> Vec<Row> {
        let (customers, connections) = (self.customers, self.connections);
        let mut rows = vec![
            self.latency_row("one checkout alone, `up`: p50", "up.checkout.1", 15.0),
            self.latency_row(
                "one checkout alone, distributed (PostgreSQL, MariaDB, Redis, RabbitMQ): p50",
                "distributed.checkout.1",
                25.0,
            ),
            self.flows_row(
                "a customer's whole flow (basket add, then checkout), one at a time, `up`",
                "up.flows.1",
                60.0,
            ),
            self.flows_row(
                &format!("a customer's whole flow, {customers} at once, `up`"),
                &format!("up.flows.{customers}"),
                300.0,
            ),
        ];
        for (mode, name) in [("up", "`up`"), ("distributed", "distributed")] {
            rows.push(self.ratio_row(
                &format!("checkouts/s, {customers} customers, {name} / `pgbench -b tpcb-like -c{customers}`"),
                &format!("{mode}.checkout.{customers}"),
                &format!("{mode}.base.pgbench.{customers}"),
                "TPS",
                Goal::AtLeast(0.40),
                Some(&format!("{mode}.orders.failed")),
            ));
        }
        rows.push(self.ratio_row(
            &format!(
                "reservations of one hot SKU, distributed (PostgreSQL) / pgbench -c{connections}"
            ),
            "distributed.reserve.hot",
            &format!("distributed.base.pgbench.{connections}"),
            "TPS",
            Goal::AtLeast(0.70),
            None,
        ));
        rows.push(self.ratio_row(
            &format!("reservations of one hot SKU, `up` (SQLite) / pgbench -c{connections}"),
            "up.reserve.hot",
            &format!("up.base.pgbench.{connections}"),
            "TPS",
            Goal::None,
            None,
        ));
        for (mode, name) in [
            ("up", "`up` (SQLite)"),
            ("distributed", "distributed (Redis)"),
        ] {
            rows.push(self.ratio_row(
                &format!("basket add, {name} / `redis-benchmark` SET"),
                &format!("{mode}.basket.add"),
                &format!("{mode}.base.redis.set"),
                "SET/s",
                Goal::AtLeast(0.20),
                None,
            ));
        }
        let reads = [
            (
                "list",
                "list-20 through the gateway / the same SQL in bare axum + sqlx",
                0.60,
            ),
            (
                "search",
                "search through the gateway / the same FTS in bare axum + sqlx",
                0.60,
            ),
            (
                "by_id",
                "cached get-by-id through the gateway / bare fixed-body server",
                0.50,
            ),
        ];
        for (read, path, goal) in reads {
            for (mode, name) in [
                ("up", "`up` (SQLite)"),
                ("distributed", "distributed (PostgreSQL)"),
            ] {
                rows.push(self.ratio_row(
                    &format!("{path}, {name}"),
                    &format!("{mode}.read.{read}"),
                    &format!("{mode}.read.{read}.bare"),
                    "req/s",
                    Goal::AtLeast(goal),
                    None,
                ));
            }
        }
        rows.push(self.start_row());
        rows.extend(self.rss_rows());
        if self.measured.contains_key("build.cold") {
            rows.push(match self.value("build.cold") {
                Ok(s) => Row {
                    path: "cold `cargo build --release -p emporium`".into(),
                    emporium: format!("{:.1} min", s / 60.0),
                    baseline: "—".into(),
                    ratio: None,
                    goal: "≤ 7 min".into(),
                    met: Goal::AtMost(7.0).met(s / 60.0),
                },
                Err(e) => missing("cold `cargo build --release -p emporium`", e, "≤ 7 min"),
            });
        }
        rows
    }

    fn latency_row(&self, path: &str, key: &str, goal_ms: f64) -> Row {
        let goal = format!("≤ {goal_ms:.0} ms");
        match self.wrk(key) {
            Ok(w) => Row {
                path: path.into(),
                emporium: format!(
                    "{:.1} ms (p99 {:.1} ms, {:.0}/s){}",
                    w.p50_ms,
                    w.p99_ms,
                    w.rps,
                    wrk_errors(w)
                ),
                baseline: "—".into(),
                ratio: None,
                goal,
                met: if w.errors {
                    "errors"
                } else {
                    Goal::AtMost(goal_ms).met(w.p50_ms)
                },
            },
            Err(e) => missing(path, e, &goal),
        }
    }

    fn flows_row(&self, path: &str, key: &str, goal_per_second: f64) -> Row {
        let goal = format!("≥ {goal_per_second:.0}/s");
        match self.get(key) {
            Ok(Measured::Flows(f)) => Row {
                path: path.into(),
                emporium: format!(
                    "{:.1} flows/s (p50 {:.0} ms, p99 {:.0} ms){}",
                    f.per_second,
                    f.p50_ms,
                    f.p99_ms,
                    if f.failed > 0 {
                        format!(", {} failed", f.failed)
                    } else {
                        String::new()
                    }
                ),
                baseline: "—".into(),
                ratio: None,
                goal,
                met: if f.failed > 0 {
                    "errors"
                } else {
                    Goal::AtLeast(goal_per_second).met(f.per_second)
                },
            },
            Ok(_) => missing(path, format!("{key} is not a flow"), &goal),
            Err(e) => missing(path, e, &goal),
        }
    }

    fn ratio_row(
        &self,
        path: &str,
        key: &str,
        baseline_key: &str,
        unit: &str,
        goal: Goal,
        failed_key: Option<&str>,
    ) -> Row {
        let goal_text = match goal {
            Goal::AtLeast(g) => format!("≥ {g:.2}×"),
            Goal::AtMost(g) => format!("≤ {g:.2}×"),
            Goal::None => "—".into(),
        };
        let shop = match self.wrk(key) {
            Ok(w) => w,
            Err(e) => return missing(path, e, &goal_text),
        };
        let baseline = match self.get(baseline_key) {
            Ok(Measured::Value(v)) => Ok(*v),
            Ok(Measured::Wrk(w)) => Ok(w.rps),
            Ok(_) => Err(format!("{baseline_key} is no rate")),
            Err(e) => Err(e),
        };
        let failed = failed_key
            .and_then(|k| self.value(k).ok())
            .filter(|n| *n > 0.0)
            .map(|n| format!(", {n:.0} orders failed"))
            .unwrap_or_default();
        let emporium = format!(
            "{:.0}/s (p50 {:.1} ms, p99 {:.0} ms){}{failed}",
            shop.rps,
            shop.p50_ms,
            shop.p99_ms,
            wrk_errors(shop)
        );
        let (baseline_text, ratio) = match baseline {
            Ok(b) => (format!("{b:.0} {unit}"), Some(shop.rps / b)),
            Err(e) => (e, None),
        };
        // A failed order is an answer (201, the order and its reason, in the
        // notes): the one a client cut off when the load stopped ends so.
        let met = if shop.errors {
            "errors"
        } else {
            ratio.map_or("—", |r| goal.met(r))
        };
        Row {
            path: path.into(),
            emporium,
            baseline: baseline_text,
            ratio,
            goal: goal_text,
            met,
        }
    }

    fn start_row(&self) -> Row {
        let path = "`emporium up` to the ready banner, fresh data dir";
        let goal = "≤ 0.5 s with all ten";
        let (Ok(Measured::Series(banner)), Ok(Measured::Series(exec))) =
            (self.get("up.start.banner_ms"), self.get("up.start.exec_ms"))
        else {
            return missing(path, "not measured (see the notes)".into(), goal);
        };
        let services = self.up_services.len();
        let stated = median(banner);
        Row {
            path: path.into(),
            emporium: format!(
                "{:.2} s by its banner, {:.2} s from exec (median of {}), {services} services",
                stated / 1000.0,
                median(exec) / 1000.0,
                banner.len()
            ),
            baseline: "—".into(),
            ratio: None,
            goal: goal.into(),
            met: if services < 10 {
                "no"
            } else {
                Goal::AtMost(500.0).met(stated)
            },
        }
    }

    fn rss_rows(&self) -> Vec<Row> {
        let mut rows = vec![];
        let path = "idle RSS of `up`, 2 s after the banner";
        let goal = "≤ 50 MB with ten";
        rows.push(match self.value("up.rss.idle") {
            Ok(mib) => Row {
                path: path.into(),
                emporium: format!(
                    "{mib:.1} MiB ({:.1} MB), {} services",
                    mib / MB,
                    self.up_services.len()
                ),
                baseline: "—".into(),
                ratio: None,
                goal: goal.into(),
                met: if self.up_services.len() < 10 {
                    "no"
                } else {
                    Goal::AtMost(50.0 * MB).met(mib)
                },
            },
            Err(e) => missing(path, e, goal),
        });
        let serve: Vec<(&str, f64)> = self
            .measured
            .iter()
            .filter_map(|(k, m)| match m {
                Measured::Value(v) => Some((k.strip_prefix("distributed.rss.idle.")?, *v)),
                _ => None,
            })
            .collect();
        let path = "idle RSS of each `serve` process (distributed, 2 s after ready)";
        let goal = "≤ 15 MB each";
        rows.push(
            if let (Some(low), Some(high)) = (
                serve.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
                serve.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
            ) {
                Row {
                    path: path.into(),
                    emporium: format!(
                        "{:.1} MiB ({}) to {:.1} MiB ({}), {} processes",
                        low.1,
                        low.0,
                        high.1,
                        high.0,
                        serve.len()
                    ),
                    baseline: "—".into(),
                    ratio: None,
                    goal: goal.into(),
                    met: Goal::AtMost(15.0 * MB).met(high.1),
                }
            } else {
                missing(path, "not measured (see the notes)".into(), goal)
            },
        );
        rows
    }

    /// The table in markdown.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| path | Emporium | baseline | ratio | goal | met |\n|---|---|---|---|---|---|\n",
        );
        for row in self.rows() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.path,
                cell(&row.emporium),
                cell(&row.baseline),
                row.ratio
                    .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×")),
                row.goal,
                row.met
            );
        }
        out
    }

    /// `results.json` (every measurement, the rows) and `results.md` (the
    /// table, the notes, every measurement) in `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let m = &self.machine;
        let rows: Vec<_> = self
            .rows()
            .into_iter()
            .map(|r| {
                json!({
                    "path": r.path, "emporium": r.emporium, "baseline": r.baseline,
                    "ratio": r.ratio.and_then(finite), "goal": r.goal, "met": r.met,
                })
            })
            .collect();
        let measured: serde_json::Map<_, _> = self
            .measured
            .iter()
            .map(|(k, v)| (k.clone(), v.json()))
            .collect();
        let document = json!({
            "machine": {
                "cores": m.cores, "cpu": m.cpu, "memory": m.memory, "kernel": m.kernel,
                "load_average_at_start": m.load, "date": m.date, "commit": m.commit,
            },
            "command": self.command,
            "binary": self.binary,
            "seconds": finite(self.seconds),
            "up_services": self.up_services,
            "rows": rows,
            "measured": measured,
            "notes": self.notes,
        });
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(&document)?,
        )?;
        let mut md = format!(
            "# Issue 24's table\n\n{}\n\n{}\n",
            self.heading(),
            self.table()
        );
        if !self.notes.is_empty() {
            md.push_str("\nNotes:\n\n");
            for note in &self.notes {
                let _ = writeln!(md, "- {note}");
            }
        }
        md.push_str("\nEvery measurement:\n\n");
        for (key, value) in &self.measured {
            let _ = writeln!(md, "- `{key}`: {}", value.line());
        }
        std::fs::write(dir.join("results.md"), md)?;
        Ok(())
    }
}

/// Text as one cell of a markdown table: one line, no column breaks.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn missing(path: &str, why: String, goal: &str) -> Row {
    Row {
        path: path.into(),
        emporium: why,
        baseline: "—".into(),
        ratio: None,
        goal: goal.into(),
        met: "—",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_hold_or_not_and_no_figure_is_no_verdict() {
        assert_eq!(Goal::AtLeast(0.40).met(0.41), "yes");
        assert_eq!(Goal::AtLeast(0.40).met(0.39), "no");
        assert_eq!(Goal::AtMost(15.0).met(15.0), "yes");
        assert_eq!(Goal::AtMost(15.0).met(f64::NAN), "—");
        assert_eq!(Goal::None.met(1.0), "—");
    }

    #[test]
    fn an_error_stays_in_its_cell() {
        assert_eq!(
            cell("FATAL: too many\nclients | already"),
            "FATAL: too many clients \\| already"
        );
    }

    #[test]
    fn a_ratio_row_divides_by_its_own_baseline() {
        let mut results = Results::new(Path::new("."), Path::new("emporium"), "bench", (16, 32));
        results.put("up.base.pgbench.16", Measured::Value(1000.0));
        results.put(
            "up.checkout.16",
            Measured::Wrk(Wrk {
                rps: 450.0,
                p50_ms: 30.0,
                p99_ms: 90.0,
                requests: 4500,
                non_2xx: 0,
                socket_errors: 0,
                errors: false,
            }),
        );
        let table = results.table();
        let row = table
            .lines()
            .find(|l| l.contains("checkouts/s, 16 customers, `up`"))
            .unwrap();
        assert!(row.contains("| 0.45× | ≥ 0.40× | yes |"), "{row}");
        let distributed = table
            .lines()
            .find(|l| l.contains("checkouts/s, 16 customers, distributed"))
            .unwrap();
        assert!(distributed.contains("not measured"), "{distributed}");
    }
}
