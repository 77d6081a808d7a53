//! The report of a load run: the summary printed at the end, the JSON
//! file, and the HTML page with its hand-drawn SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::Options;
use super::shopper::STEPS;
use super::stats::{Histogram, Recorder};

#[derive(Serialize)]
pub struct Report {
    pub target: String,
    pub started_at: String,
    /// `closed` (a number of users) or `open` (an arrival rate).
    pub model: &'static str,
    pub users: Option<u32>,
    pub rate: Option<f64>,
    pub seed: u64,
    /// The weights of the actions, as --mix takes them.
    pub mix: String,
    pub declined_share: f64,
    pub returning_share: f64,
    pub think_ms: f64,
    pub duration_s: f64,
    pub elapsed_s: f64,
    pub interrupted: bool,
    pub totals: Totals,
    pub steps: Vec<StepReport>,
    pub checkouts: CheckoutReport,
    pub sessions: SessionReport,
    /// Each second of the run, all steps together.
    pub timeline: Vec<SecondReport>,
    /// All answers' latencies: the non-empty buckets.
    pub histogram: Vec<Bucket>,
    /// Why the run failed; empty when it passed.
    pub problems: Vec<String>,
}

#[derive(Serialize)]
pub struct Totals {
    pub requests: u64,
    pub per_second: f64,
    /// 5xx, 4xx no step expects, and requests without an answer.
    pub errors: u64,
    pub server_errors: u64,
    pub no_answer: u64,
    /// 429s of the edge's rate limits, not counted as errors.
    pub throttled: u64,
    #[serde(flatten)]
    pub latency: Latency,
}

#[derive(Serialize)]
pub struct Latency {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram) -> Self {
        Latency {
            mean_ms: round(h.mean_ms()),
            p50_ms: round(h.quantile_ms(0.50)),
            p95_ms: round(h.quantile_ms(0.95)),
            p99_ms: round(h.quantile_ms(0.99)),
            max_ms: round(h.max_ms()),
        }
    }
}

#[derive(Serialize)]
pub struct StepReport {
    pub name: &'static str,
    pub requests: u64,
    pub per_second: f64,
    #[serde(flatten)]
    pub latency: Latency,
    pub errors: u64,
    pub throttled: u64,
    /// Answers by status; `0` counts requests that had none.
    pub statuses: BTreeMap<String, u64>,
    pub histogram: Vec<Bucket>,
}

#[derive(Serialize)]
pub struct CheckoutReport {
    pub attempted: u64,
    pub confirmed: u64,
    pub failed: u64,
    /// Failed orders by the reason they give (numbers as `#`).
    pub failed_reasons: BTreeMap<String, u64>,
    /// Refused before an order was made, by status and detail.
    pub refused: BTreeMap<String, u64>,
    /// Neither confirmed nor failed with a reason.
    pub unsettled: u64,
    pub unsettled_examples: Vec<String>,
    /// Confirmed orders the shoppers cancelled later.
    pub cancelled: u64,
}

#[derive(Serialize)]
pub struct SessionReport {
    pub started: u64,
    pub finished: u64,
    pub signed_up: u64,
    pub signed_in: u64,
    pub dropped: u64,
}

#[derive(Serialize)]
pub struct SecondReport {
    pub second: usize,
    pub requests: u64,
    pub errors: u64,
    pub throttled: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Serialize)]
pub struct Bucket {
    pub from_ms: f64,
    pub to_ms: f64,
    pub count: u64,
}

fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

fn buckets(h: &Histogram) -> Vec<Bucket> {
    h.buckets()
        .into_iter()
        .map(|(from_ms, to_ms, count)| Bucket {
            from_ms: round(from_ms),
            to_ms: round(to_ms),
            count,
        })
        .collect()
}

impl Report {
    pub fn new(
        options: &Options,
        target: &str,
        started_at: chrono::DateTime<chrono::Utc>,
        elapsed: Duration,
        interrupted: bool,
        recorder: &Recorder,
    ) -> Self {
        let seconds = elapsed.as_secs_f64().max(0.001);
        let mut names: Vec<&'static str> = STEPS
            .iter()
            .copied()
            .filter(|s| recorder.steps.contains_key(s))
            .collect();
        names.extend(recorder.steps.keys().filter(|s| !STEPS.contains(s)));
        let steps = names
            .iter()
            .map(|name| {
                let s = &recorder.steps[name];
                let requests: u64 = s.statuses.values().sum();
                StepReport {
                    name,
                    requests,
                    per_second: round(requests as f64 / seconds),
                    latency: Latency::of(&s.latency),
                    errors: s.errors,
                    throttled: s.throttled,
                    statuses: s
                        .statuses
                        .iter()
                        .map(|(status, n)| (status.to_string(), *n))
                        .collect(),
                    histogram: buckets(&s.latency),
                }
            })
            .collect();
        let c = &recorder.checkouts;
        let checkouts = CheckoutReport {
            attempted: c.confirmed + c.failed_total() + c.refused_total() + c.unsettled,
            confirmed: c.confirmed,
            failed: c.failed_total(),
            failed_reasons: c.failed.clone(),
            refused: c.refused.clone(),
            unsettled: c.unsettled,
            unsettled_examples: c.unsettled_examples.clone(),
            cancelled: c.cancelled,
        };
        let no_answer: u64 = recorder
            .steps
            .values()
            .map(|s| s.statuses.get(&0).copied().unwrap_or(0))
            .sum();
        let totals = Totals {
            requests: recorder.requests(),
            per_second: round(recorder.requests() as f64 / seconds),
            errors: recorder.errors(),
            server_errors: recorder.server_errors(),
            no_answer,
            throttled: recorder.throttled(),
            latency: Latency::of(&recorder.overall),
        };
        let mut problems = vec![];
        if totals.server_errors > 0 {
            problems.push(format!("{} answers were 5xx", totals.server_errors));
        }
        if no_answer > 0 {
            problems.push(format!("{no_answer} requests had no answer"));
        }
        if c.unsettled > 0 {
            problems.push(format!(
                "{} checkouts ended neither confirmed nor failed with a reason",
                c.unsettled
            ));
        }
        let s = &recorder.sessions;
        Report {
            target: target.to_owned(),
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            model: if options.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            users: options.rate.is_none().then(|| options.users.unwrap_or(16)),
            rate: options.rate,
            seed: options.seed,
            mix: options.mix.to_string(),
            declined_share: options.declined,
            returning_share: options.returning,
            think_ms: options.think.as_secs_f64() * 1e3,
            duration_s: options.duration.as_secs_f64(),
            elapsed_s: round(elapsed.as_secs_f64()),
            interrupted,
            totals,
            steps,
            checkouts,
            sessions: SessionReport {
                started: s.started,
                finished: s.finished,
                signed_up: s.signed_up,
                signed_in: s.signed_in,
                dropped: s.dropped,
            },
            timeline: recorder
                .seconds
                .iter()
                .enumerate()
                .map(|(second, s)| SecondReport {
                    second,
                    requests: s.requests,
                    errors: s.errors,
                    throttled: s.throttled,
                    p50_ms: round(s.latency.quantile_ms(0.50)),
                    p99_ms: round(s.latency.quantile_ms(0.99)),
                })
                .collect(),
            histogram: buckets(&recorder.overall),
            problems,
        }
    }

    /// Whether the run passed: no 5xx, every request answered, every
    /// checkout settled.
    pub fn verdict(&self) -> anyhow::Result<()> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("the load run failed: {}", self.problems.join("; "))
        }
    }

    fn load_line(&self) -> String {
        match (self.users, self.rate) {
            (_, Some(rate)) => format!("{rate} new sessions/s"),
            (Some(users), None) => format!("{users} users"),
            (None, None) => String::new(),
        }
    }

    /// The text printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let t = &self.totals;
        let _ = writeln!(
            out,
            "\nShoppers against {} for {:.1} s ({}, seed {}){}",
            self.target,
            self.elapsed_s,
            self.load_line(),
            self.seed,
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "  {} requests, {:.1}/s; {} errors ({} 5xx, {} without answer); {} throttled (429)",
            t.requests, t.per_second, t.errors, t.server_errors, t.no_answer, t.throttled
        );
        let _ = writeln!(
            out,
            "  sessions: {} started, {} signed up, {} signed in again{}",
            self.sessions.started,
            self.sessions.signed_up,
            self.sessions.signed_in,
            if self.sessions.dropped > 0 {
                format!(
                    ", {} arrivals dropped (--max-active)",
                    self.sessions.dropped
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "\n  {:<16} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6}",
            "step", "requests", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "429"
        );
        let rows = self.steps.iter().map(|s| {
            (
                s.name,
                s.requests,
                s.per_second,
                &s.latency,
                s.errors,
                s.throttled,
            )
        });
        for (name, requests, per_second, l, errors, throttled) in rows.chain(std::iter::once((
            "all",
            t.requests,
            t.per_second,
            &t.latency,
            t.errors,
            t.throttled,
        ))) {
            let _ = writeln!(
                out,
                "  {name:<16} {requests:>8} {per_second:>8.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {errors:>7} {throttled:>6}",
                l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
            );
        }
        let odd: Vec<String> = self
            .steps
            .iter()
            .flat_map(|s| {
                s.statuses
                    .iter()
                    .filter(|(status, _)| !status.starts_with('2'))
                    .map(move |(status, n)| {
                        let status = if status == "0" { "no answer" } else { status };
                        format!("{} {status} ×{n}", s.name)
                    })
            })
            .collect();
        if !odd.is_empty() {
            let _ = writeln!(out, "\n  answers other than 2xx: {}", odd.join(", "));
        }
        if t.throttled > 0 {
            let _ = writeln!(
                out,
                "  (429s are the edge's per-address and per-user limits, not errors of the shop; \
                 see `emporium load --help` for the settings that lift them)"
            );
        }
        let c = &self.checkouts;
        let _ = writeln!(
            out,
            "\n  checkouts: {} attempted, {} confirmed, {} failed, {} refused, {} unsettled; {} cancelled later",
            c.attempted,
            c.confirmed,
            c.failed,
            c.refused.values().sum::<u64>(),
            c.unsettled,
            c.cancelled
        );
        for (reason, n) in &c.failed_reasons {
            let _ = writeln!(out, "    failed   {n:>6}  {reason}");
        }
        for (detail, n) in &c.refused {
            let _ = writeln!(out, "    refused  {n:>6}  {detail}");
        }
        for example in &c.unsettled_examples {
            let _ = writeln!(out, "    unsettled        {example}");
        }
        if self.problems.is_empty() {
            let _ = writeln!(
                out,
                "\n  passed: no 5xx, every request answered, every checkout settled"
            );
        } else {
            let _ = writeln!(out, "\n  FAILED: {}", self.problems.join("; "));
        }
        out
    }

    /// Writes `path`.json and `path`.html.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make {}", dir.display()))?;
        }
        let json = path.with_extension("json");
        std::fs::write(&json, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", json.display()))?;
        let html = path.with_extension("html");
        std::fs::write(&html, self.html())
            .with_context(|| format!("cannot write {}", html.display()))?;
        Ok(())
    }

    /// A page that opens offline: its style and plots are in it.
    pub fn html(&self) -> String {
        let t = &self.totals;
        let c = &self.checkouts;
        let mut page = String::new();
        let verdict = if self.problems.is_empty() {
            "<p class=\"pass\">Passed: no 5xx, every request answered, every checkout confirmed or failed with a reason.</p>".to_owned()
        } else {
            format!(
                "<p class=\"fail\">Failed: {}</p>",
                escape(&self.problems.join("; "))
            )
        };
        let _ = write!(
            page,
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Emporium load report</title>
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; margin: 24px 32px; max-width: 1200px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 26px 0 8px; }}
.meta {{ color: #5a6375; margin: 0 0 12px; }}
.cards {{ display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0; }}
.card {{ flex: 1; border: 1px solid #dde2ea; border-radius: 6px; padding: 8px 12px; white-space: nowrap; }}
.card b {{ display: block; font-size: 20px; }} .card span {{ color: #5a6375; font-size: 12px; }}
table {{ border-collapse: collapse; font-variant-numeric: tabular-nums; }}
th, td {{ padding: 3px 10px; border-bottom: 1px solid #e6e9ef; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }} th {{ background: #f4f6f9; font-weight: 600; }}
td.reason, th.reason {{ text-align: left; }} tr.all td {{ font-weight: 600; border-top: 2px solid #c9d0db; }}
.pass {{ color: #17663a; font-weight: 600; }} .fail {{ color: #b42318; font-weight: 600; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 18px; }}
svg {{ background: #fff; border: 1px solid #e6e9ef; border-radius: 6px; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #4a5263; }} svg .title {{ font-size: 13px; font-weight: 600; fill: #1d2330; }}
</style></head><body>
<h1>Emporium load report</h1>
<p class="meta">{target} &middot; started {started} &middot; {elapsed:.1} s of {duration:.0} s{interrupted} &middot; {load} &middot; seed {seed} &middot; think {think:.0} ms &middot; declined cards {declined:.0} % &middot; returning shoppers {returning:.0} %<br>mix: {mix}</p>
{verdict}
<div class="cards">
<div class="card"><b>{requests}</b><span>requests</span></div>
<div class="card"><b>{rps:.1}/s</b><span>throughput</span></div>
<div class="card"><b>{p50:.1} / {p99:.1} ms</b><span>p50 / p99</span></div>
<div class="card"><b>{errors}</b><span>errors ({server} 5xx)</span></div>
<div class="card"><b>{throttled}</b><span>throttled (429)</span></div>
<div class="card"><b>{confirmed} / {failed}</b><span>checkouts confirmed / failed</span></div>
<div class="card"><b>{sessions}</b><span>sessions ({signed_up} new, {signed_in} returning)</span></div>
</div>
"#,
            target = escape(&self.target),
            started = escape(&self.started_at),
            elapsed = self.elapsed_s,
            duration = self.duration_s,
            interrupted = if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
            load = escape(&self.load_line()),
            seed = self.seed,
            think = self.think_ms,
            declined = self.declined_share * 100.0,
            returning = self.returning_share * 100.0,
            mix = escape(&self.mix.replace(',', ", ")),
            requests = t.requests,
            rps = t.per_second,
            p50 = t.latency.p50_ms,
            p99 = t.latency.p99_ms,
            errors = t.errors,
            server = t.server_errors,
            throttled = t.throttled,
            confirmed = c.confirmed,
            failed = c.failed,
            sessions = self.sessions.started,
            signed_up = self.sessions.signed_up,
            signed_in = self.sessions.signed_in,
        );
        page.push_str("<h2>Latency and throughput over time</h2>\n<div class=\"plots\">\n");
        page.push_str(&self.timeline_plot());
        page.push_str(&self.throughput_plot());
        page.push_str("</div>\n<h2>Latency distribution</h2>\n<div class=\"plots\">\n");
        page.push_str(&histogram_plot(&self.histogram, &self.totals.latency));
        page.push_str(&self.steps_plot());
        page.push_str("</div>\n<h2>Steps</h2>\n");
        page.push_str(&self.steps_table());
        page.push_str("<h2>Checkouts</h2>\n");
        page.push_str(&self.checkouts_table());
        page.push_str("</body></html>\n");
        page
    }

    fn steps_table(&self) -> String {
        let mut out = String::from(
            "<table><tr><th>step</th><th>requests</th><th>per s</th><th>mean ms</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>errors</th><th>429</th><th class=\"reason\">answers by status</th></tr>\n",
        );
        let row = |out: &mut String,
                   class: &str,
                   name: &str,
                   requests: u64,
                   per_second: f64,
                   l: &Latency,
                   errors: u64,
                   throttled: u64,
                   statuses: &str| {
            let _ = writeln!(
                out,
                "<tr class=\"{class}\"><td>{}</td><td>{requests}</td><td>{per_second:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{errors}</td><td>{throttled}</td><td class=\"reason\">{}</td></tr>",
                escape(name),
                l.mean_ms,
                l.p50_ms,
                l.p95_ms,
                l.p99_ms,
                l.max_ms,
                escape(statuses)
            );
        };
        for s in &self.steps {
            let statuses = s
                .statuses
                .iter()
                .map(|(status, n)| {
                    let status = if status == "0" { "none" } else { status };
                    format!("{status}: {n}")
                })
                .collect::<Vec<_>>()
                .join(", ");
            row(
                &mut out,
                "",
                s.name,
                s.requests,
                s.per_second,
                &s.latency,
                s.errors,
                s.throttled,
                &statuses,
            );
        }
        let t = &self.totals;
        row(
            &mut out,
            "all",
            "all",
            t.requests,
            t.per_second,
            &t.latency,
            t.errors,
            t.throttled,
            "",
        );
        out.push_str("</table>\n");
        out
    }

    fn checkouts_table(&self) -> String {
        let c = &self.checkouts;
        let mut out = String::from(
            "<table><tr><th>outcome</th><th>count</th><th class=\"reason\">reason, as the order API gives it</th></tr>\n",
        );
        let _ = writeln!(
            out,
            "<tr><td>confirmed</td><td>{}</td><td class=\"reason\"></td></tr>",
            c.confirmed
        );
        for (reason, n) in &c.failed_reasons {
            let _ = writeln!(
                out,
                "<tr><td>failed</td><td>{n}</td><td class=\"reason\">{}</td></tr>",
                escape(reason)
            );
        }
        for (detail, n) in &c.refused {
            let _ = writeln!(
                out,
                "<tr><td>refused (no order)</td><td>{n}</td><td class=\"reason\">{}</td></tr>",
                escape(detail)
            );
        }
        let examples = c.unsettled_examples.join("; ");
        let _ = writeln!(
            out,
            "<tr><td>unsettled</td><td>{}</td><td class=\"reason\">{}</td></tr>",
            c.unsettled,
            escape(&examples)
        );
        let _ = writeln!(
            out,
            "<tr class=\"all\"><td>attempted</td><td>{}</td><td class=\"reason\">{} confirmed orders cancelled later by their shoppers</td></tr>",
            c.attempted, c.cancelled
        );
        out.push_str("</table>\n");
        out
    }

    fn timeline_plot(&self) -> String {
        let answered: Vec<&SecondReport> =
            self.timeline.iter().filter(|s| s.requests > 0).collect();
        let series = |value: fn(&SecondReport) -> f64| -> Vec<(f64, f64)> {
            answered
                .iter()
                .map(|s| (s.second as f64 + 0.5, value(s)))
                .collect()
        };
        self.over_time(
            "timeline",
            "Latency per second, all steps (ms, log scale)",
            true,
            vec![
                (series(|s| s.p99_ms), "#d9480f", "p99"),
                (series(|s| s.p50_ms), "#1c7ed6", "p50"),
            ],
        )
    }

    fn throughput_plot(&self) -> String {
        // The last second, cut short by the end of the run, would look
        // like a drop.
        let whole: Vec<&SecondReport> = self
            .timeline
            .iter()
            .filter(|s| s.second as f64 + 1.0 <= self.elapsed_s || self.timeline.len() == 1)
            .collect();
        let series = |count: fn(&SecondReport) -> u64| -> Vec<(f64, f64)> {
            whole
                .iter()
                .map(|s| (s.second as f64 + 0.5, count(s) as f64))
                .collect()
        };
        let mut lines = vec![(series(|s| s.requests), "#2b8a3e", "requests")];
        let throttled = series(|s| s.throttled);
        if throttled.iter().any(|p| p.1 > 0.0) {
            lines.push((throttled, "#868e96", "429"));
        }
        lines.push((series(|s| s.errors), "#c92a2a", "errors"));
        self.over_time("throughput", "Requests per second", false, lines)
    }

    /// Lines of (second, value) over the run: from 0 up, or on a log
    /// scale, where one slow second does not flatten the rest.
    fn over_time(
        &self,
        id: &'static str,
        title: &'static str,
        log: bool,
        mut lines: Vec<Series>,
    ) -> String {
        let values = || lines.iter().flat_map(|line| line.0.iter().map(|p| p.1));
        let top = values().fold(0.0, f64::max);
        let y_range = if log {
            let low = values().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
            let (low, high) = log_range(low.min(top).max(0.01), top.max(0.01));
            (low.log10(), high.log10().max(low.log10() + 1.0))
        } else {
            (0.0, nice_ceiling(top))
        };
        if log {
            for line in &mut lines {
                for point in &mut line.0 {
                    point.1 = point.1.max(10f64.powf(y_range.0)).log10();
                }
            }
        }
        let mut plot = Plot::new(id, title, (0.0, self.elapsed_s.max(1.0)), y_range);
        plot.axes("seconds into the run", false, log);
        for (points, color, label) in &lines {
            plot.line(points, color, label);
        }
        plot.finish()
    }

    /// Each step's p50 to p99 as a bar, its max as a tick, on a log scale.
    fn steps_plot(&self) -> String {
        let steps: Vec<&StepReport> = self
            .steps
            .iter()
            .filter(|s| s.latency.max_ms > 0.0)
            .collect();
        let low = steps
            .iter()
            .map(|s| s.latency.p50_ms)
            .fold(f64::INFINITY, f64::min)
            .max(0.01);
        let high = steps
            .iter()
            .map(|s| s.latency.max_ms)
            .fold(0.0, f64::max)
            .max(low * 10.0);
        let (low, high) = log_range(low, high);
        let row = 22.0;
        let height = 60.0 + row * steps.len().max(1) as f64;
        let mut plot = Plot::sized(
            "steps",
            "Each step: p50 to p99 (bar), p95 (line), max (tick), ms",
            (low.log10(), high.log10()),
            (0.0, steps.len().max(1) as f64),
            (560.0, height),
            110.0,
        );
        plot.x_ticks(true);
        for (i, s) in steps.iter().enumerate() {
            // The first step on top.
            let y = plot.y((steps.len() - i) as f64 - 0.5);
            let x = |ms: f64| plot.x(ms.max(low).log10());
            let _ = write!(
                plot.body,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{:.1}" y="{:.1}" width="{:.1}" height="12" fill="#a5d8ff" stroke="#1c7ed6"/><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#1864ab" stroke-width="2"/><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#d9480f" stroke-width="2"/>"##,
                plot.left - 6.0,
                y + 4.0,
                escape(s.name),
                x(s.latency.p50_ms),
                y - 6.0,
                (x(s.latency.p99_ms) - x(s.latency.p50_ms)).max(1.5),
                x(s.latency.p95_ms),
                x(s.latency.p95_ms),
                y - 6.0,
                y + 6.0,
                x(s.latency.max_ms),
                x(s.latency.max_ms),
                y - 8.0,
                y + 8.0,
            );
        }
        plot.finish()
    }
}

/// A line to draw: its (x, y) points, colour and legend.
type Series = (Vec<(f64, f64)>, &'static str, &'static str);

/// All answers' latencies: bars on log-spaced bins, with p50, p95, p99.
fn histogram_plot(histogram: &[Bucket], latency: &Latency) -> String {
    let low = histogram.first().map_or(0.1, |b| b.from_ms.max(0.01));
    let high = histogram.last().map_or(1.0, |b| b.to_ms).max(low * 10.0);
    let (low, high) = log_range(low, high);
    // Ten bins a decade, each counting the buckets that start in it.
    let bins = ((high / low).log10() * 10.0).round().max(1.0) as usize;
    let mut counts = vec![0u64; bins];
    for b in histogram {
        let at = ((b.from_ms.max(low) / low).log10() * 10.0).floor() as usize;
        counts[at.min(bins - 1)] += b.count;
    }
    let top = counts.iter().copied().max().unwrap_or(0) as f64;
    let mut plot = Plot::new(
        "histogram",
        "Latency histogram, all steps (answers per bin)",
        (low.log10(), high.log10()),
        (0.0, nice_ceiling(top)),
    );
    plot.axes("ms (log scale)", true, false);
    let width = plot.x(low.log10() + 0.1) - plot.x(low.log10());
    for (i, count) in counts.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let x = plot.x(low.log10() + i as f64 / 10.0);
        let y = plot.y(*count as f64);
        let _ = write!(
            plot.body,
            r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#74c0fc" stroke="#1c7ed6" stroke-width="0.5"/>"##,
            x + 0.5,
            (width - 1.0).max(1.0),
            (plot.y(0.0) - y).max(0.0),
        );
    }
    for (label, ms, color) in [
        ("p50", latency.p50_ms, "#1864ab"),
        ("p95", latency.p95_ms, "#e8590c"),
        ("p99", latency.p99_ms, "#c92a2a"),
    ] {
        if ms <= 0.0 {
            continue;
        }
        let x = plot.x(ms.max(low).log10());
        let _ = write!(
            plot.body,
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="{color}">{label} {ms:.1}</text>"#,
            plot.top,
            plot.y(0.0),
            x + 3.0,
            plot.top
                + 12.0
                + 13.0 * f64::from(u8::from(label == "p95"))
                + 26.0 * f64::from(u8::from(label == "p99")),
        );
    }
    plot.finish()
}

/// Powers of ten around `low..high`.
fn log_range(low: f64, high: f64) -> (f64, f64) {
    (
        10f64.powf(low.log10().floor()),
        10f64.powf(high.log10().ceil()),
    )
}

/// A round number at or above `value`: 1, 2 or 5 times a power of ten.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|v| *v >= value)
        .unwrap_or(10.0 * power)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One SVG chart drawn by hand: data ranges mapped onto a frame.
struct Plot {
    id: &'static str,
    title: &'static str,
    x_range: (f64, f64),
    y_range: (f64, f64),
    width: f64,
    height: f64,
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
    body: String,
    legend: Vec<(&'static str, &'static str)>,
}

impl Plot {
    fn new(
        id: &'static str,
        title: &'static str,
        x_range: (f64, f64),
        y_range: (f64, f64),
    ) -> Self {
        Self::sized(id, title, x_range, y_range, (560.0, 300.0), 56.0)
    }

    fn sized(
        id: &'static str,
        title: &'static str,
        x_range: (f64, f64),
        y_range: (f64, f64),
        (width, height): (f64, f64),
        left: f64,
    ) -> Self {
        Plot {
            id,
            title,
            x_range,
            y_range,
            width,
            height,
            left,
            top: 34.0,
            right: 16.0,
            bottom: 40.0,
            body: String::new(),
            legend: vec![],
        }
    }

    fn x(&self, value: f64) -> f64 {
        let (a, b) = self.x_range;
        let span = if b > a { b - a } else { 1.0 };
        self.left + (value - a) / span * (self.width - self.left - self.right)
    }

    fn y(&self, value: f64) -> f64 {
        let (a, b) = self.y_range;
        let span = if b > a { b - a } else { 1.0 };
        self.height - self.bottom - (value - a) / span * (self.height - self.top - self.bottom)
    }

    /// Grid lines and labels, each axis linear or (in log10 units) log.
    fn axes(&mut self, x_label: &str, log_x: bool, log_y: bool) {
        self.x_ticks(log_x);
        let (a, b) = self.y_range;
        for (at, label, major) in ticks(a, b, log_y) {
            let y = self.y(at);
            let stroke = if major { "#e3e7ee" } else { "#f3f4f7" };
            let _ = write!(
                self.body,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{stroke}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
                self.left,
                self.width - self.right,
                self.left - 5.0,
                y + 4.0,
            );
        }
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (self.left + self.width - self.right) / 2.0,
            self.height - 6.0,
            escape(x_label)
        );
    }

    fn x_ticks(&mut self, log: bool) {
        let (a, b) = self.x_range;
        for (at, label, major) in ticks(a, b, log) {
            let x = self.x(at);
            let stroke = if major { "#e3e7ee" } else { "#f3f4f7" };
            let _ = write!(
                self.body,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{stroke}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                self.top,
                self.height - self.bottom,
                self.height - self.bottom + 14.0,
            );
        }
    }

    fn line(&mut self, points: &[(f64, f64)], color: &'static str, label: &'static str) {
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", self.x(*x), self.y(*y)))
            .collect();
        if !path.is_empty() {
            let _ = write!(
                self.body,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" stroke-linejoin="round" points="{}"/>"#,
                path.join(" ")
            );
        }
        self.legend.push((label, color));
    }

    fn finish(self) -> String {
        let mut legend = String::new();
        let mut x = self.width - self.right;
        for (label, color) in self.legend.iter().rev() {
            x -= 8.0 + 7.0 * label.len() as f64;
            let _ = write!(
                legend,
                r#"<rect x="{:.1}" y="14" width="12" height="3" fill="{color}"/><text x="{:.1}" y="19">{label}</text>"#,
                x - 16.0,
                x
            );
            x -= 22.0;
        }
        format!(
            r##"<svg id="{id}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{title}"><text class="title" x="{left}" y="20">{title}</text>{legend}<rect x="{left}" y="{top}" width="{fw:.1}" height="{fh:.1}" fill="none" stroke="#c9d0db"/>{body}</svg>
"##,
            id = self.id,
            w = self.width,
            h = self.height,
            title = escape(self.title),
            left = self.left,
            top = self.top,
            fw = self.width - self.left - self.right,
            fh = self.height - self.top - self.bottom,
            body = self.body,
        )
    }
}

/// About five round steps from `a` to `b`.
fn linear_ticks(a: f64, b: f64) -> Vec<f64> {
    if b <= a {
        return vec![a];
    }
    let raw = (b - a) / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    let mut ticks = vec![];
    let mut tick = (a / step).ceil() * step;
    while tick <= b + step * 1e-9 {
        ticks.push(tick);
        tick += step;
    }
    ticks
}

/// Where an axis from `a` to `b` gets grid lines, with their labels and
/// whether each is major: round steps, or (for `a` and `b` in log10 units)
/// 1, 2 and 5 times each power of ten.
fn ticks(a: f64, b: f64, log: bool) -> Vec<(f64, String, bool)> {
    if !log {
        return linear_ticks(a, b)
            .into_iter()
            .map(|t| (t, short(t), true))
            .collect();
    }
    // Past three decades the 2s and 5s keep their lines but not their
    // labels, which would run into each other.
    let crowded = b - a > 3.0 + 1e-9;
    let mut out = vec![];
    let mut decade = a.floor();
    while decade <= b + 1e-9 {
        for m in [1.0f64, 2.0, 5.0] {
            let at = decade + m.log10();
            if (a - 1e-9..=b + 1e-9).contains(&at) {
                let major = m == 1.0;
                let label = if major || !crowded {
                    short(10f64.powf(at))
                } else {
                    String::new()
                };
                out.push((at, label, major));
            }
        }
        decade += 1.0;
    }
    out
}

/// A tick label: no needless decimals.
fn short(value: f64) -> String {
    // 10^log10(50) is 49.99999…
    let value = (value * 1e6).round() / 1e6;
    if value >= 1000.0 && value % 1000.0 == 0.0 {
        format!("{}k", value / 1000.0)
    } else if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else if value >= 0.1 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_have_round_ticks() {
        assert_eq!(
            linear_ticks(0.0, 100.0),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(linear_ticks(0.0, 2.5), vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(log_range(0.3, 47.0), (0.1, 100.0));
        assert_eq!(short(2000.0), "2k");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(10f64.powf(50f64.log10())), "50");
        let labels = |a: f64, b: f64| -> Vec<String> {
            ticks(a, b, true).into_iter().map(|t| t.1).collect()
        };
        assert_eq!(labels(0.0, 2.0), ["1", "2", "5", "10", "20", "50", "100"]);
        assert_eq!(
            labels(-1.0, 3.0),
            [
                "0.1", "", "", "1", "", "", "10", "", "", "100", "", "", "1k"
            ]
        );
    }

    #[test]
    fn text_from_the_shop_is_escaped_in_the_page() {
        assert_eq!(
            escape("<b>\"x\" & y</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;"
        );
    }
}
