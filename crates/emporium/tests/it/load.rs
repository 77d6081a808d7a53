//! `emporium load` against a running `emporium up`: seeded shoppers leave
//! every order confirmed or failed with a reason (as the orders API, not
//! the load's own counts, tells), and the JSON and HTML reports hold every
//! step; targets off loopback and bad flags are refused with a message.

use super::*;

/// `emporium load ARGS` in `dir`: its exit code, stdout and stderr.
async fn load(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_emporium"))
        .arg("load")
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the load stops by itself")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every order the shop holds, as an admin lists them page by page.
async fn every_order(http: &reqwest::Client, base: &str, admin: &str) -> Vec<Value> {
    let mut orders = vec![];
    for page in 1.. {
        let answer: Value = http
            .get(format!("{base}/api/v1/orders?per_page=100&page={page}"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = answer["items"].as_array().unwrap();
        orders.extend(items.iter().cloned());
        if items.len() < 100 {
            return orders;
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_shoppers_leave_every_order_confirmed_or_failed_with_a_reason() {
    let up = UpProcess::start(&[]).await;
    let admin = up.token("admin", "load-check").await;
    let http = reqwest::Client::new();
    let before: std::collections::HashSet<String> = every_order(&http, &up.base, &admin)
        .await
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("out/run");
    let (code, stdout, stderr) = load(
        dir.path(),
        &[
            &up.base,
            "--users",
            "6",
            "--duration",
            "10s",
            "--seed",
            "7",
            "--think",
            "20ms",
            "--mix",
            "checkout=20,cancel=10",
            "--declined",
            "0.3",
            "--returning",
            "0.5",
            "--actions",
            "4..12",
            "--restock",
            "500",
            "--admin-token",
            &admin,
            "--report",
            report.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("passed: no 5xx"), "{stdout}");

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(report.with_extension("json")).unwrap())
            .unwrap();
    let steps: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // Each step a shopper takes, in a ten-second mix that weighs checkouts
    // and cancellations up.
    for step in emporium::load::STEPS {
        assert!(steps.contains(step), "{step} missing from {steps:?}");
    }
    for step in json["steps"].as_array().unwrap() {
        assert!(step["requests"].as_u64().unwrap() > 0, "{step}");
        let (p50, p99, max) = (
            step["p50_ms"].as_f64().unwrap(),
            step["p99_ms"].as_f64().unwrap(),
            step["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{step}");
        let fives: u64 = step["statuses"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(status, _)| status.starts_with('5'))
            .map(|(_, n)| n.as_u64().unwrap())
            .sum();
        assert_eq!(fives, 0, "{step}");
    }
    assert_eq!(json["totals"]["server_errors"], 0, "{stdout}");
    assert_eq!(json["totals"]["no_answer"], 0, "{stdout}");
    assert_eq!(json["checkouts"]["unsettled"], 0, "{stdout}");
    assert!(
        json["sessions"]["signed_in"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    assert!(!json["timeline"].as_array().unwrap().is_empty());
    assert!(!json["histogram"].as_array().unwrap().is_empty());
    let confirmed = json["checkouts"]["confirmed"].as_u64().unwrap();
    let failed = json["checkouts"]["failed"].as_u64().unwrap();
    assert!(confirmed > 0 && failed > 0, "{stdout}");

    // What the shop itself holds: every order the run made is confirmed
    // (or cancelled since) or failed with a reason, none left pending.
    let made: Vec<Value> = every_order(&http, &up.base, &admin)
        .await
        .into_iter()
        .filter(|o| !before.contains(o["id"].as_str().unwrap()))
        .collect();
    assert!(!made.is_empty());
    for order in &made {
        let settled = match order["status"].as_str().unwrap() {
            "confirmed" | "cancelled" => true,
            "failed" => !order["failure_reason"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .is_empty(),
            _ => false,
        };
        assert!(settled, "{order}");
    }
    let by_status = |status: &str| made.iter().filter(|o| o["status"] == status).count() as u64;
    assert_eq!(
        made.len() as u64,
        confirmed + failed,
        "the orders the shop holds are the checkouts the load counted: {stdout}"
    );
    assert_eq!(by_status("failed"), failed);
    assert_eq!(
        by_status("cancelled"),
        json["checkouts"]["cancelled"].as_u64().unwrap()
    );
    assert!(made.iter().any(|o| {
        o["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains("declined"))
    }));

    let html = std::fs::read_to_string(report.with_extension("html")).unwrap();
    for plot in [
        "<svg id=\"timeline\"",
        "<svg id=\"throughput\"",
        "<svg id=\"histogram\"",
        "<svg id=\"steps\"",
    ] {
        assert!(html.contains(plot), "{plot} missing");
    }
    assert!(html.contains("<polyline") && html.contains("<rect"));
    assert!(html.contains("checkout") && html.contains("confirmed"));
    // Self-contained: nothing to fetch when opened offline.
    for outside in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!html.contains(outside), "{outside} in the page");
    }
    up.stop().await;
}

#[tokio::test]
async fn a_target_off_loopback_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    for target in ["http://192.0.2.10:8080", "http://shop.example.com"] {
        let (code, _, stderr) = load(dir.path(), &[target, "--duration", "1s"]).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("not a loopback address"), "{stderr}");
        assert!(stderr.contains("--allow-host"), "{stderr}");
    }
    assert!(!dir.path().join("load-report.json").exists());
    // Nothing listens at port 9 on loopback: said plainly, no report.
    let (code, _, stderr) = load(dir.path(), &["http://127.0.0.1:9", "--duration", "1s"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach the shop"), "{stderr}");
    assert!(!dir.path().join("load-report.json").exists());
}

#[tokio::test]
async fn bad_flags_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    for (args, said) in [
        (&["--mix", "buy=3"][..], "no action is called `buy`"),
        (&["--mix", "browse"][..], "NAME=WEIGHT"),
        (&["--users", "4", "--rate", "2"][..], "cannot be used with"),
        (&["--users", "0"][..], "--users"),
        (&["--rate", "0"][..], "not a rate"),
        (&["--duration", "soon"][..], "not a duration"),
        (&["--declined", "2"][..], "not a share from 0 to 1"),
        (&["--actions", "9..3"][..], "FEWEST..MOST"),
        (&["--restock", "100"][..], "--admin-token"),
    ] {
        let (code, _, stderr) = load(dir.path(), args).await;
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
}
