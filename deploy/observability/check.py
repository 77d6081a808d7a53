"""Helpers of deploy/observability/check: what bash does badly.

Subcommands (each prints what it found and exits non-zero on a failure):
  static               rules' annotations and runbooks, every alert tested
                       both ways, dashboards' JSON, data sources, and the
                       wiring between Promtail, Loki, Tempo, the collector
                       and Grafana
  free-ports N         N free loopback ports
  prometheus-config    the live Prometheus configuration (see live_config)
  blackbox-config      the repo's blackbox modules, trusting a test CA
  alertmanager-config  the repo's Alertmanager, webhooks sent to loopback
  webhook PORT FILE    a webhook receiver appending each POST to FILE
  live                 asserts through Prometheus's and Alertmanager's APIs
"""

import glob
import http.server
import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RULE_FILES = [os.path.join(HERE, "prometheus/rules/recording.yml"), os.path.join(HERE, "prometheus/rules/alerts.yml")]
DASHBOARDS = sorted(glob.glob(os.path.join(HERE, "grafana/dashboards/*.json")))
SEVERITIES = {"critical", "warning", "info"}
EXPORTER_PREFIXES = ("pg_", "redis_", "rabbitmq_", "node_", "probe_")
PROMETHEUS_OWN = {"up"}
# Grafana's interval variables, as Grafana would fill them for a short range.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}

failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message)


def done():
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def rules():
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                yield rule


def dashboard_targets():
    """(dashboard file, panel, expr) for every Prometheus query of every dashboard."""
    for path in DASHBOARDS:
        with open(path) as f:
            board = json.load(f)
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield os.path.basename(path), panel, target["expr"]


def grafana_expr(expr):
    for name, value in GRAFANA_VARS.items():
        expr = expr.replace(name, value)
    return expr


# --- metric names in PromQL -------------------------------------------------

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "inf", "nan", "atan2"}


def metric_names(expr):
    """The metric names an expression reads (not functions, labels or keywords)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"'(?:\\.|[^'\\])*'", "''", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        token = m.group(0)
        before = e[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":
            continue  # the exponent of a number
        if e[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if token.lower() in KEYWORDS:
            continue
        names.add(token)
    return names


def declared_in_source():
    """Names declared in the services' METRICS and the platform's PLATFORM_METRICS."""
    names = set()
    for path in glob.glob(os.path.join(REPO, "crates/*/src/*.rs")):
        with open(path) as f:
            text = f.read()
        names.update(re.findall(r'Metric::new\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', text))
    return names


def parse_exposition(text):
    samples, helped = set(), set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line and not line.startswith("#"):
            samples.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return samples, helped


def base_name(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --- static -----------------------------------------------------------------

def github_anchor(heading):
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def static():
    # Alerts: severity, summary, description, a runbook that exists.
    with open(os.path.join(REPO, "docs/operations.md")) as f:
        anchors = {github_anchor(h) for h in re.findall(r"^#+\s+(.+)$", f.read(), re.M)}
    alerts, recorded = [], []
    for rule in rules():
        if "record" in rule:
            recorded.append(rule["record"])
            continue
        name = rule["alert"]
        alerts.append(name)
        severity = rule.get("labels", {}).get("severity")
        if severity not in SEVERITIES:
            fail(f"alert {name}: severity {severity!r} is not one of {sorted(SEVERITIES)}")
        notes = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            if not notes.get(key):
                fail(f"alert {name}: no {key} annotation")
        runbook = notes.get("runbook", "")
        page, _, anchor = runbook.partition("#")
        if page != "docs/operations.md" or anchor not in anchors:
            fail(f"alert {name}: runbook {runbook!r} names no section of docs/operations.md")
    print(f"alerts: {len(alerts)} rules ({len(set(alerts))} names), each with severity, summary, description and a runbook section")

    # Every alert fires on a crafted series and stays silent on a healthy one.
    fires, silent = set(), set()
    for path in glob.glob(os.path.join(HERE, "prometheus/tests/*.yml")):
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    for name in sorted(set(alerts)):
        if name not in fires:
            fail(f"alert {name}: no unit test where it fires")
        if name not in silent:
            fail(f"alert {name}: no unit test where it stays silent")
    print(f"unit tests: {len(fires & set(alerts))} alerts fire on a crafted series, {len(silent & set(alerts))} stay silent on a healthy one")

    # Data sources and dashboards.
    sources = load_yaml(os.path.join(HERE, "grafana/provisioning/datasources/datasources.yml"))["datasources"]
    uids = {s["uid"]: s for s in sources}
    for uid in ("prometheus", "loki", "tempo"):
        if uid not in uids:
            fail(f"datasources.yml: no data source with uid {uid}")
    loki, tempo = uids.get("loki", {}), uids.get("tempo", {})
    if not any(d.get("datasourceUid") == "tempo" and "trace_id" in d.get("matcherRegex", "")
               for d in loki.get("jsonData", {}).get("derivedFields", [])):
        fail("datasources.yml: Loki has no derived field from trace_id to Tempo")
    to_logs = tempo.get("jsonData", {}).get("tracesToLogsV2", {})
    if to_logs.get("datasourceUid") != "loki" or "trace_id" not in to_logs.get("query", ""):
        fail("datasources.yml: Tempo's traces-to-logs does not query Loki by trace_id")
    seen_uids, panels, latency_links = set(), 0, 0
    for path in DASHBOARDS:
        name = os.path.basename(path)
        try:
            with open(path) as f:
                board = json.load(f)
        except ValueError as e:
            fail(f"{name}: not JSON: {e}")
            continue
        for key in ("uid", "title", "panels"):
            if key not in board:
                fail(f"{name}: no {key}")
        if board.get("uid") in seen_uids:
            fail(f"{name}: uid {board.get('uid')} used twice")
        seen_uids.add(board.get("uid"))
        ids = set()
        for panel in board.get("panels", []):
            if panel.get("id") in ids:
                fail(f"{name}: panel id {panel.get('id')} used twice")
            ids.add(panel.get("id"))
            grid = panel.get("gridPos", {})
            if not {"x", "y", "w", "h"} <= grid.keys() or grid["x"] + grid["w"] > 24:
                fail(f"{name}: panel {panel.get('title')!r} has no place on the grid")
            if panel.get("type") == "row":
                continue
            panels += 1
            uid = panel.get("datasource", {}).get("uid")
            if uid not in uids:
                fail(f"{name}: panel {panel.get('title')!r} names data source {uid!r}, not provisioned")
            if not panel.get("targets") or not all(t.get("expr") for t in panel["targets"]):
                fail(f"{name}: panel {panel.get('title')!r} has no query")
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            is_latency = unit == "s" and any("http_request_duration" in t.get("expr", "") for t in panel.get("targets", []))
            if is_latency:
                links = panel["fieldConfig"]["defaults"].get("links", [])
                if not any("tempo" in link.get("url", "") for link in links):
                    fail(f"{name}: latency panel {panel.get('title')!r} does not link to traces")
                latency_links += 1
    print(f"dashboards: {len(DASHBOARDS)} valid JSON, {panels} panels on provisioned data sources, "
          f"{latency_links} latency panels linking to Tempo")

    # The wiring between the log and trace pipeline's parts.
    promtail = load_yaml(os.path.join(HERE, "promtail/promtail.yml"))
    loki_cfg = load_yaml(os.path.join(HERE, "loki/loki.yml"))
    tempo_cfg = load_yaml(os.path.join(HERE, "tempo/tempo.yml"))
    otel = load_yaml(os.path.join(HERE, "otel-collector/config.yml"))
    loki_port = loki_cfg["server"]["http_listen_port"]
    if not all(c["url"].endswith(f":{loki_port}/loki/api/v1/push") for c in promtail["clients"]):
        fail("promtail.yml does not push to loki.yml's port")
    if f":{loki_port}" not in loki.get("url", ""):
        fail("datasources.yml: Loki's URL is not at loki.yml's port")
    for job in promtail["scrape_configs"]:
        stages = job.get("pipeline_stages", [])
        kinds = {k for s in stages for k in s}
        json_stage = next((s["json"] for s in stages if "json" in s), {})
        labels = next((s["labels"] for s in stages if "labels" in s), {})
        if "json" not in kinds or not {"service", "level"} <= set(labels):
            fail(f"promtail.yml job {job['job_name']}: no JSON stage with labels service and level")
        if "trace_id" in labels:
            fail(f"promtail.yml job {job['job_name']}: trace_id must not be a label")
        if "trace_id" not in json_stage.get("expressions", {}) or "output" in kinds:
            fail(f"promtail.yml job {job['job_name']}: trace_id is not kept")
    if not loki_cfg.get("limits_config", {}).get("allow_structured_metadata"):
        fail("loki.yml: structured metadata (trace_id) not allowed")
    tempo_http = tempo_cfg["server"]["http_listen_port"]
    if f":{tempo_http}" not in tempo.get("url", ""):
        fail("datasources.yml: Tempo's URL is not at tempo.yml's port")
    tempo_grpc = tempo_cfg["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1]
    pipeline = otel["service"]["pipelines"]["traces"]
    if "otlp" not in pipeline["receivers"] or set(otel["receivers"]["otlp"]["protocols"]) != {"grpc", "http"}:
        fail("otel-collector: traces are not received over OTLP gRPC and HTTP")
    exporters = [otel["exporters"][e] for e in pipeline["exporters"]]
    if not any(e.get("endpoint", "").endswith(f"tempo:{tempo_grpc}") for e in exporters):
        fail("otel-collector: traces are not exported to Tempo's OTLP gRPC receiver")
    for stage in pipeline["processors"]:
        if stage not in otel["processors"]:
            fail(f"otel-collector: processor {stage} is used but not configured")
    print(f"wiring: promtail -> loki :{loki_port}, collector -> tempo :{tempo_grpc}, "
          f"grafana -> loki, tempo, prometheus by uid; trace_id kept, labels service and level")
    done()


# --- configurations for the live run -----------------------------------------

def free_ports(n):
    import socket
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def prometheus_config(target, blackbox, tls_target, alertmanager, prom_port, out):
    """prometheus-up.yml as it is, scraping `target` every 5 s, with the
    repo's rules by absolute path, plus prometheus.yml's TLS probe, its
    blackbox, Alertmanager and self jobs pointed at loopback."""
    config = load_yaml(os.path.join(HERE, "prometheus/prometheus-up.yml"))
    distributed = {j["job_name"]: j for j in load_yaml(os.path.join(HERE, "prometheus/prometheus.yml"))["scrape_configs"]}
    config["global"].update({"scrape_interval": "5s", "scrape_timeout": "4s", "evaluation_interval": "5s"})
    config["rule_files"] = RULE_FILES
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    probe = distributed["blackbox-tls"]
    probe["static_configs"] = [{"targets": [tls_target]}]
    for relabel in probe["relabel_configs"]:
        if relabel.get("target_label") == "__address__":
            relabel["replacement"] = blackbox
    own = {"blackbox": blackbox, "alertmanager": alertmanager, "prometheus": f"127.0.0.1:{prom_port}"}
    for name, address in own.items():
        distributed[name]["static_configs"] = [{"targets": [address]}]
    config["scrape_configs"] = [job, probe] + [distributed[name] for name in own]
    with open(out, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)


def blackbox_config(ca_file, out):
    config = load_yaml(os.path.join(HERE, "blackbox/blackbox.yml"))
    config["modules"]["tls"]["http"]["tls_config"]["ca_file"] = ca_file
    with open(out, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)


def alertmanager_config(webhook, out):
    config = load_yaml(os.path.join(HERE, "alertmanager/alertmanager.yml"))
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            path = urllib.parse.urlparse(hook["url"]).path
            hook["url"] = f"http://{webhook}{path}"
    with open(out, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)


def webhook(port, out):
    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with open(out, "a") as f:
                f.write(json.dumps({"path": self.path, "body": body}) + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", int(port)), Hook).serve_forever()


# --- live --------------------------------------------------------------------

def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def query(prom, expr):
    url = f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        answer = json.loads(get(url))
    except urllib.error.HTTPError as e:
        answer = json.loads(e.read().decode())
    if answer.get("status") != "success":
        return None, answer.get("error", "no answer")
    return answer["data"]["result"], None


def is_red_or_checkout(expr):
    """Panels that must show data after the load: RED and checkout."""
    red = re.search(r"\bhttp_request|service(_endpoint|_le)?:http_", expr)
    checkout = re.search(r"order_processing|orders_created|checkout", expr)
    return bool(red or checkout)


def live(prom, metrics_url, alertmanager, hook_file):
    # Targets.
    targets = json.loads(get(f"http://{prom}/api/v1/targets"))["data"]["activeTargets"]
    up = [t for t in targets if t["health"] == "up"]
    for t in targets:
        if t["health"] != "up":
            fail(f"target {t['labels'].get('job')} {t['scrapeUrl']} is {t['health']}: {t.get('lastError')}")
    values, _ = query(prom, "up")
    ones = [v for v in values or [] if v["value"][1] == "1"]
    print(f"targets up: {len(up)}/{len(targets)} healthy, up == 1 for {len(ones)}/{len(values or [])} "
          f"({', '.join(sorted(t['labels']['job'] for t in targets))})")
    if not targets or len(ones) != len(values or []) or len(ones) != len(targets):
        fail("not every target has up == 1")

    # Rules as Prometheus evaluated them, then each expression asked again.
    groups = json.loads(get(f"http://{prom}/api/v1/rules"))["data"]["groups"]
    evaluated = [r for g in groups for r in g["rules"]]
    for r in evaluated:
        if r.get("health") != "ok" or r.get("lastError"):
            fail(f"rule {r['name']}: health {r.get('health')}: {r.get('lastError')}")
    recording = [r for r in evaluated if r["type"] == "recording"]
    alerting = [r for r in evaluated if r["type"] == "alerting"]
    expected = list(rules())
    if len(evaluated) != len(expected):
        fail(f"Prometheus loaded {len(evaluated)} rules, the files hold {len(expected)}")
    rule_series = rule_errors = 0
    recorded_with_data = 0
    for rule in expected:
        result, error = query(prom, rule["expr"])
        if error:
            rule_errors += 1
            fail(f"rule {rule.get('record') or rule.get('alert')}: {error}")
            continue
        rule_series += len(result)
        if "record" in rule and result:
            recorded_with_data += 1
    healthy = sum(r.get("health") == "ok" and not r.get("lastError") for r in evaluated)
    print(f"rules: {len(recording)} recording and {len(alerting)} alerting rules loaded, {healthy}/{len(evaluated)} healthy in "
          f"Prometheus's own evaluation; {len(expected)} expressions asked again, {rule_errors} with an error: {rule_series} series "
          f"({recorded_with_data}/{len(recording)} recording rules with data)")

    # The shop's RED figures under the load, as the overview shows them.
    figures = {}
    for column, expr in (("req/s", "service:http_requests:rate5m"), ("5xx", "service:http_requests_errors:ratio_rate5m"),
                         ("p99 s", "service:http_request_duration_seconds:p99_5m")):
        for sample in query(prom, expr)[0] or []:
            figures.setdefault(sample["metric"].get("service", "?"), {})[column] = float(sample["value"][1])
    print("RED under the load: " + "; ".join(
        f"{svc} {f.get('req/s', 0):.2f} req/s, {f.get('5xx', 0):.1%} 5xx, p99 {f.get('p99 s', 0):.3f} s"
        for svc, f in sorted(figures.items())))
    checkout, _ = query(prom, "shop:checkout_success:ratio_rate5m")
    saga, _ = query(prom, "status:order_processing_duration_seconds:p95_5m")
    print("checkout: success ratio " + ", ".join(f"{float(s['value'][1]):.1%}" for s in checkout or []) + "; saga p95 "
          + ", ".join(f"{s['metric'].get('status')} {float(s['value'][1]):.3f} s" for s in saga or []))

    # Dashboards.
    asked = with_data = series = errors = 0
    must, must_ok = 0, 0
    empty = []
    for board, panel, expr in dashboard_targets():
        result, error = query(prom, grafana_expr(expr))
        asked += 1
        if error:
            errors += 1
            fail(f"{board}: panel {panel['title']!r}: {error}")
            continue
        series += len(result)
        with_data += bool(result)
        if is_red_or_checkout(expr):
            must += 1
            if result:
                must_ok += 1
            else:
                fail(f"{board}: RED or checkout panel {panel['title']!r} returned no data: {expr}")
        elif not result:
            empty.append(f"{board}:{panel['title']}")
    print(f"dashboards: {asked} expressions evaluated, {errors} with an error, {series} series; {with_data}/{asked} with data; "
          f"RED and checkout: {must_ok}/{must} with data")
    print(f"  without data now (no such event yet, or an exporter absent here): {len(empty)}: " + "; ".join(empty))

    # Every metric name a rule or a panel reads is exported by someone.
    samples, helped = parse_exposition(get(metrics_url))
    declared = declared_in_source()
    recorded = {r["record"] for r in expected if "record" in r}
    counts = {"live": set(), "declared, no series yet": set(), "recorded": set(), "exporters'": set(), "Prometheus's": set()}
    exprs = [r["expr"] for r in expected] + [grafana_expr(e) for _, _, e in dashboard_targets()]
    for expr in exprs:
        for name in metric_names(expr):
            if name in samples or base_name(name) in helped or name in helped:
                counts["live"].add(name)
            elif name in recorded:
                counts["recorded"].add(name)
            elif name in declared or base_name(name) in declared:
                counts["declared, no series yet"].add(name)
            elif name.startswith(EXPORTER_PREFIXES):
                counts["exporters'"].add(name)
            elif name in PROMETHEUS_OWN:
                counts["Prometheus's"].add(name)
            else:
                fail(f"metric {name} is read by `{expr.strip()[:80]}` but nobody exports it")
    print("metric names read: " + ", ".join(f"{len(v)} {k}" for k, v in counts.items()))
    print(f"  declared, no series yet: {' '.join(sorted(counts['declared, no series yet']))}")

    # Alerts as they stand on the live shop.
    active = json.loads(get(f"http://{prom}/api/v1/alerts"))["data"]["alerts"]
    states = sorted(f"{a['labels']['alertname']}[{a['labels'].get('severity')}]={a['state']}" for a in active)
    print(f"alerts on the live shop: {', '.join(states) or 'none'}")
    if not any(a["labels"]["alertname"] == "CertificateExpiresSoon" for a in active):
        fail("CertificateExpiresSoon is not pending for the probed certificate that expires in 10 days")

    alertmanager_check(alertmanager, hook_file)
    done()


def alert(name, severity, **labels):
    return {"labels": {"alertname": name, "severity": severity, **labels},
            "annotations": {"summary": f"check: {name}"}}


def post(alertmanager, alerts):
    request = urllib.request.Request(f"http://{alertmanager}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).read()


# Ordering is down: its error ratio and the circuit to it are held back;
# catalog's error ratio and low stock are not; a certificate's critical
# alert holds back its warning.
FIRST = [
    alert("ServiceDown", "critical", service="ordering", job="ordering"),
    alert("HighErrorRatio", "critical", service="ordering"),
    alert("CircuitOpen", "warning", service="ordering", peer="ordering"),
    alert("HighErrorRatio", "critical", service="catalog"),
    alert("LowStock", "info", service="inventory"),
    alert("CertificateExpiresSoon", "warning", instance="https://shop.example.org/", job="blackbox-tls"),
    alert("CertificateExpiresSoon", "critical", instance="https://shop.example.org/", job="blackbox-tls"),
]
FIRST_HELD = {("HighErrorRatio", "ordering", "critical"), ("CircuitOpen", "ordering", "warning"),
              ("CertificateExpiresSoon", "", "warning")}
FIRST_HEARD = {("/on-call", "ServiceDown", "ordering"), ("/on-call", "HighErrorRatio", "catalog"),
               ("/on-call", "CertificateExpiresSoon", ""), ("/team", "LowStock", "inventory")}


def post_test_alerts(alertmanager):
    post(alertmanager, FIRST)
    print(f"posted {len(FIRST)} alerts to Alertmanager")


def held_back(alertmanager):
    alerts = json.loads(get(f"http://{alertmanager}/api/v2/alerts"))
    key = lambda a: (a["labels"]["alertname"], a["labels"].get("service", ""), a["labels"]["severity"])
    return {key(a) for a in alerts if a["status"]["inhibitedBy"]}, {key(a) for a in alerts}


def alertmanager_check(alertmanager, hook_file):
    held, _ = held_back(alertmanager)
    if held != FIRST_HELD:
        fail(f"alertmanager held back {sorted(held)}, expected {sorted(FIRST_HELD)}")
    heard = []
    if os.path.exists(hook_file):
        with open(hook_file) as f:
            heard = [json.loads(line) for line in f]
    notified = {(h["path"], a["labels"]["alertname"], a["labels"].get("service", ""))
                for h in heard for a in h["body"]["alerts"]}
    if notified != FIRST_HEARD:
        fail(f"the webhooks heard {sorted(notified)}, expected {sorted(FIRST_HEARD)}")
    # Then the whole shop in `up` goes down: everything else is held back.
    post(alertmanager, FIRST + [alert("ServiceDown", "critical", service="emporium", job="emporium")])
    time.sleep(2)
    held_then, every = held_back(alertmanager)
    expected = {k for k in every if k[0] != "ServiceDown"}
    if held_then != expected:
        fail(f"with emporium down, alertmanager held back {sorted(held_then)}, expected {sorted(expected)}")
    print(f"alertmanager: ServiceDown held back {len(held)} of {len(FIRST) - 1} alerts "
          f"(those of the service down, and a warning under its critical), then {len(held_then)} of "
          f"{len(every) - 2} once the whole shop was down; the webhooks heard {len(heard)} notifications: "
          + ", ".join(sorted(f"{n} {s}".strip() + f" at {p}" for p, n, s in notified)))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "static":
        static()
    elif command == "free-ports":
        free_ports(int(args[0]))
    elif command == "prometheus-config":
        prometheus_config(*args)
    elif command == "blackbox-config":
        blackbox_config(*args)
    elif command == "alertmanager-config":
        alertmanager_config(*args)
    elif command == "webhook":
        webhook(*args)
    elif command == "post-test-alerts":
        post_test_alerts(*args)
    elif command == "live":
        live(*args)
    else:
        sys.exit(f"unknown command {command}")
