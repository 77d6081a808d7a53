#!/usr/bin/env python3
"""Reads the rendered overlays of deploy/k8s and checks them against the
shop's contract (SPEC §1, §8, §10, seed 004) and its call graph.

    check.py validate CRD_CHECKER_DIR RENDERED.yaml...
        every object against the Kubernetes schemas of the newest version
        kubernetes-validate ships (strict: an unknown field fails), and the
        custom resources against their CRD schemas (crd-check/validate.mjs,
        run with node from CRD_CHECKER_DIR, where its node_modules are).

    check.py config EMPORIUM_BINARY DEV_RENDERED.yaml
        each workload of the shop in the dev render, with exactly the
        environment its pod would get (ConfigMap, Secrets, `$(VAR)`
        expansion), through `emporium config <service>`: the binary accepts
        it, and the effective settings are the ones intended (addresses,
        database, Redis, broker, peers, JWKS, secrets present).

    check.py assert --production P --dev D --istio I --rps R --prometheus PROMETHEUS_YML
        the rendered production overlay (and the others where they differ):
        Deployments, probes, resources, security contexts, Services, HPA
        bounds, the wiring of each service's settings, the stores, Secrets,
        the scrape jobs, and every NetworkPolicy evaluated with Kubernetes'
        semantics against the call graph below: every call the shop makes
        is allowed, and every other one is denied.

Prints a table of what it checked; exits 1 on any failure.
"""

import argparse
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict

import yaml

NAMESPACE = "production"

# SPEC §1, shared with the other deploy checker (deploy/spec_ports.py).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spec_ports import GATEWAY_INTERNAL, SPEC_PORTS as SPEC  # noqa: E402
APIS = ["identity", "catalog", "basket", "inventory", "ordering", "payment", "notification",
        "recommendation"]
# Seed 004 and SPEC §10: storefront 2–5 replicas, the APIs (and the gateway
# in front of them) 3–10.
HPA_BOUNDS = {name: ((2, 5) if name == "storefront" else (3, 10)) for name in SPEC}
# docs/performance.md: idle RSS of one `emporium serve` process 19–41 MB;
# after a load, 78 MiB for a process of three services.
IDLE_RSS_MAX = 41_000_000
LOADED_RSS = 78 * 2**20

# The stores, as the code configures them (crates/*/src/lib.rs, Plain):
# each service's own relational database, Redis where its settings name
# one, RabbitMQ where it publishes (an outbox relay) or consumes.
DATABASE = {s: f"postgres-{s}" for s in APIS if s != "payment"}
DATABASE["payment"] = "mariadb-payment"
STORE_PORT = {"postgres": 5432, "mariadb": 3306, "redis": 6379, "rabbitmq": 5672, "minio": 9000}
REDIS_USERS = ["gateway", "catalog", "basket", "inventory", "ordering", "payment", "notification"]
BROKER_USERS = APIS
# gRPC peers (Peer::of in each crate): identity is called by every service
# that calls peers, for its service token (ServiceCredentials), and by
# notification for users.
GRPC_PEERS = {
    "storefront": ["catalog", "inventory", "recommendation", "identity"],
    "basket": ["catalog", "identity"],
    "ordering": ["catalog", "inventory", "payment", "basket", "identity"],
    "notification": ["identity"],
}


def call_graph():
    """(source, destination, port, why) of every call the shop makes inside
    the namespace; sources and destinations are workload names."""
    calls = []
    for s in APIS + ["storefront"]:
        calls.append(("gateway", s, SPEC[s][0], "the gateway routes its REST API"))
    calls.append(("storefront", "gateway", 8080, "a shopper's actions go through the API"))
    for s in SPEC:
        if s != "identity":
            calls.append((s, "identity", 8004, "the JWKS, to verify tokens"))
    for source, peers in GRPC_PEERS.items():
        for peer in peers:
            calls.append((source, peer, SPEC[peer][1], "gRPC"))
    for s, db in DATABASE.items():
        calls.append((s, db, STORE_PORT[db.split("-")[0]], "its own database"))
    for s in REDIS_USERS:
        calls.append((s, "redis", 6379, "Redis"))
    for s in BROKER_USERS:
        calls.append((s, "rabbitmq", 5672, "the broker"))
    calls.append(("catalog", "minio", 9000, "product images"))
    calls.append(("minio-bucket", "minio", 9000, "makes the bucket"))
    return calls


# What Prometheus scrapes: each service's metrics port, the exporters.
def metrics_ports():
    ports = {s: (GATEWAY_INTERNAL if s == "gateway" else SPEC[s][0]) for s in SPEC}
    for db in DATABASE.values():
        if db.startswith("postgres-"):
            ports[db] = 9187
    ports["redis"] = 9121
    ports["rabbitmq"] = 15692
    return ports


# ---------------------------------------------------------------- reporting

class Report:
    def __init__(self):
        self.rows = []
        self.failures = []

    def check(self, what, count, failures):
        self.rows.append((what, count, len(failures)))
        for f in failures:
            self.failures.append(f"{what}: {f}")

    def print(self):
        width = max(len(r[0]) for r in self.rows)
        print(f"{'check':<{width}}  {'checked':>7}  {'failed':>6}")
        for what, count, failed in self.rows:
            print(f"{what:<{width}}  {count:>7}  {failed:>6}")
        for f in self.failures:
            print(f"FAIL {f}")
        total = sum(r[1] for r in self.rows)
        print(f"{len(self.rows)} checks, {total} items checked, {len(self.failures)} failures")
        return not self.failures


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def objects(docs, kind, namespace=None):
    return [d for d in docs if d["kind"] == kind
            and (namespace is None or d["metadata"].get("namespace") == namespace)]


def by_name(docs, kind, namespace=NAMESPACE):
    return {d["metadata"]["name"]: d for d in objects(docs, kind, namespace)}


# ------------------------------------------------------------------ validate

CORE_GROUPS = {"v1", "apps", "batch", "policy", "autoscaling", "networking.k8s.io"}


def validate(checker_dir, paths):
    import kubernetes_validate
    from kubernetes_validate import utils as kv

    version = kv.latest_version()
    ok = True
    for path in paths:
        docs = load(path)
        core, custom, failures = Counter(), [], []
        for d in docs:
            group = d["apiVersion"].split("/")[0] if "/" in d["apiVersion"] else "v1"
            label = f"{d['kind']}/{d['metadata'].get('name')}"
            if group in CORE_GROUPS:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                    core[d["kind"]] += 1
                except Exception as e:  # noqa: BLE001 - every kind of refusal is a failure
                    failures.append(f"{label}: {getattr(e, 'message', e)}")
            else:
                custom.append({"source": os.path.basename(path), "object": d})
        print(f"\n{os.path.basename(path)}: {len(docs)} objects")
        for kind, n in sorted(core.items()):
            print(f"  {n:>3}  {kind}")
        print(f"{sum(core.values())} objects valid against Kubernetes {version} (strict)")
        for f in failures:
            print(f"FAIL {f}")
        ok &= not failures
        if custom:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(custom, f)
            try:
                result = subprocess.run(["node", "validate.mjs", f.name], cwd=checker_dir)
            finally:
                os.unlink(f.name)
            ok &= result.returncode == 0
    return ok


# ------------------------------------------------------------------- helpers

def selects(selector, labels):
    """A label selector (matchLabels, matchExpressions) against labels; the
    empty selector selects everything."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def containers(workload):
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container, name):
    e = env_of(container).get(name)
    return None if e is None else e.get("value")


def quantity(q):
    """A Kubernetes quantity as a number (bytes or cores)."""
    q = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for u, f in units.items():
        if q.endswith(u):
            return float(q[: -len(u)]) * f
    return float(q)


def container_ports(workload):
    out = []
    for c in containers(workload):
        for p in c.get("ports", []):
            out.append((p.get("name"), p["containerPort"], p.get("protocol", "TCP")))
    return out


def probe_port(container, probe):
    get = (container.get(probe) or {}).get("httpGet")
    if not get:
        return None, None
    port = get["port"]
    if isinstance(port, str):
        named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        port = named.get(port)
    return get.get("path"), port


# ---------------------------------------------------------- network policies

class Actor:
    """A pod (or an address outside the cluster) that calls or is called."""

    def __init__(self, ident, ns, labels, ip, ports=(), acts_as=None):
        self.id, self.ns, self.labels, self.ip = ident, ns, labels, ipaddress.ip_address(ip)
        self.ports = list(ports)
        self.acts_as = acts_as or ident

    def named_port(self, name):
        return [(p, proto) for n, p, proto in self.ports if n == name]


class Policies:
    def __init__(self, docs):
        self.policies = objects(docs, "NetworkPolicy")
        self.ns_labels = defaultdict(dict)
        for d in objects(docs, "Namespace"):
            self.ns_labels[d["metadata"]["name"]].update(d["metadata"].get("labels") or {})

    def namespace_labels(self, ns):
        # The API server labels every namespace with its name.
        return {**self.ns_labels.get(ns, {}), "kubernetes.io/metadata.name": ns}

    @staticmethod
    def types(policy):
        spec = policy["spec"]
        if "policyTypes" in spec:
            return spec["policyTypes"]
        return ["Ingress"] + (["Egress"] if "egress" in spec else [])

    def peer_matches(self, peer, policy_ns, actor):
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            if actor.ip not in ipaddress.ip_network(block["cidr"]):
                return False
            return not any(actor.ip in ipaddress.ip_network(e) for e in block.get("except", []))
        if actor.ns is None:  # an address outside the cluster: only ipBlock names it
            return False
        ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
        ns_ok = (actor.ns == policy_ns if ns_sel is None
                 else selects(ns_sel, self.namespace_labels(actor.ns)))
        return ns_ok and (pod_sel is None or selects(pod_sel, actor.labels))

    @staticmethod
    def port_matches(rule_ports, destination, port, proto):
        if not rule_ports:
            return True
        for p in rule_ports:
            if p.get("protocol", "TCP") != proto:
                continue
            if "port" not in p:
                return True
            want = p["port"]
            if isinstance(want, str):
                if (port, proto) in destination.named_port(want):
                    return True
            elif want <= port <= p.get("endPort", want):
                return True
        return False

    def allowed_side(self, side, subject, other, destination, port, proto):
        """Whether `subject`'s policies of `side` (Ingress or Egress) let
        the connection to or from `other` through."""
        if subject.ns is None:
            return True
        selecting = [p for p in self.policies
                     if p["metadata"].get("namespace") == subject.ns
                     and side in self.types(p)
                     and selects(p["spec"].get("podSelector", {}), subject.labels)]
        if not selecting:
            return True  # not isolated for this direction
        key, peers_key = ("ingress", "from") if side == "Ingress" else ("egress", "to")
        for p in selecting:
            for rule in p["spec"].get(key) or []:
                peers = rule.get(peers_key)
                if peers and not any(self.peer_matches(peer, subject.ns, other) for peer in peers):
                    continue
                if self.port_matches(rule.get("ports"), destination, port, proto):
                    return True
        return False

    def allowed(self, source, destination, port, proto):
        # Policies are enforced in the namespaces this repository manages;
        # the other namespaces' own policies (ingress-nginx, monitoring) are
        # not ours to read.
        managed = {NAMESPACE}
        egress = (source.ns not in managed
                  or self.allowed_side("Egress", source, destination, destination, port, proto))
        ingress = (destination.ns not in managed
                   or self.allowed_side("Ingress", destination, source, destination, port, proto))
        return egress and ingress


def actors(docs, istio):
    """The pods of the render, and the world around them."""
    pods = []
    n = 0
    for kind in ("Deployment", "StatefulSet", "Job"):
        for w in objects(docs, kind, NAMESPACE):
            n += 1
            name = w["metadata"]["name"]
            m = re.fullmatch(r"(migrate|seed)-(\w+)", name)
            acts_as = m.group(2) if m else ("catalog" if name == "catalog-canary" else name)
            labels = w["spec"]["template"]["metadata"].get("labels", {})
            pods.append(Actor(name, NAMESPACE, labels, f"10.244.0.{n}", container_ports(w),
                              acts_as))
    world = {
        "ingress-nginx": Actor("ingress-nginx", "ingress-nginx",
                               {"app.kubernetes.io/name": "ingress-nginx",
                                "app.kubernetes.io/component": "controller"}, "10.244.1.1"),
        "prometheus": Actor("prometheus", "monitoring",
                            {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"},
                            "10.244.1.2"),
        "grafana": Actor("grafana", "monitoring", {"app.kubernetes.io/name": "grafana"},
                         "10.244.1.3"),
        "debug-pod-elsewhere": Actor("debug-pod-elsewhere", "default", {"run": "debug"},
                                     "10.244.1.4"),
        # A pod someone starts by hand, listening on a port: no rule names it.
        "debug-pod-in-production": Actor("debug-pod-in-production", NAMESPACE, {"run": "debug"},
                                         "10.244.1.5", [("http", 8080, "TCP")]),
        "acme-solver": Actor("acme-solver", NAMESPACE,
                             {"acme.cert-manager.io/http01-solver": "true"}, "10.244.1.6",
                             [("http", 8089, "TCP")]),
        "kube-dns": Actor("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, "10.244.1.7",
                          [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]),
        "otel-collector": Actor("otel-collector", "monitoring",
                                {"app.kubernetes.io/name": "opentelemetry-collector"},
                                "10.244.1.8", [("otlp-http", 4318, "TCP")]),
        "istiod": Actor("istiod", "istio-system", {"app": "istiod"}, "10.244.1.9",
                        [("xds", 15012, "TCP")]),
        "smtp-relay": Actor("smtp-relay", None, {}, "203.0.113.25",
                            [("submission", 587, "TCP"), ("submissions", 465, "TCP"),
                             ("smtp", 25, "TCP")]),
        "private-host": Actor("private-host", None, {}, "192.168.10.20",
                              [("submission", 587, "TCP"), ("https", 443, "TCP")]),
        "internet": Actor("internet", None, {}, "198.51.100.7",
                          [("https", 443, "TCP"), ("http", 80, "TCP")]),
    }
    return pods, world


def expected_connections(pods, world, istio, tls):
    """Every (source, destination, port, protocol) the shop needs."""
    by_role = defaultdict(list)
    for p in pods:
        by_role[p.acts_as].append(p)
    services = {p.id for p in pods}
    want = set()

    def add(sources, destinations, port, proto="TCP"):
        for s in sources:
            for d in destinations:
                want.add((s.id, d.id, port, proto))

    for source, destination, port, _ in call_graph():
        # A service's calls are its replicas', its canary's and its Jobs';
        # a call to a service reaches its Deployment's pods and canary's
        # (Jobs listen on nothing).
        dests = [d for d in by_role[destination] if any(p == port for _, p, _ in d.ports)]
        add(by_role[source], dests, port)
    for role, port in metrics_ports().items():
        add([world["prometheus"]], [d for d in by_role[role] if any(p == port for _, p, _ in d.ports)],
            port)
    add([world["ingress-nginx"]], by_role["gateway"], 8080)
    if tls:
        # cert-manager's HTTP-01 solver, a pod it starts here when an
        # Ingress asks for a certificate.
        add([world["ingress-nginx"]], [world["acme-solver"]], 8089)
    # Every pod of the namespace may ask the cluster DNS, whatever it is.
    in_namespace = pods + [world["acme-solver"], world["debug-pod-in-production"]]
    add(in_namespace, [world["kube-dns"]], 53, "UDP")
    add(in_namespace, [world["kube-dns"]], 53, "TCP")
    processes = [p for p in pods if p.labels.get("app.kubernetes.io/component")
                 in ("edge", "web", "api", "migration")]
    add(processes, [world["otel-collector"]], 4318)
    add(by_role["notification"], [world["smtp-relay"]], 587)
    add(by_role["notification"], [world["smtp-relay"]], 465)
    if istio:
        add([p for p in pods if p.labels.get("app.kubernetes.io/component") in ("edge", "web", "api")],
            [world["istiod"]], 15012)
    assert services  # the render has pods
    return want


def evaluate_policies(docs, istio, report, label):
    policies = Policies(docs)
    pods, world = actors(docs, istio)
    sources = pods + [world[k] for k in ("ingress-nginx", "prometheus", "grafana",
                                          "debug-pod-elsewhere", "debug-pod-in-production",
                                          "acme-solver")]
    destinations = pods + [world[k] for k in ("acme-solver", "debug-pod-in-production",
                                               "kube-dns", "otel-collector",
                                               "istiod", "smtp-relay", "private-host",
                                               "internet")]
    want = expected_connections(pods, world, istio, bool(objects(docs, "Ingress")))
    allowed = {}
    for s in sources:
        for d in destinations:
            # Between two pods of other namespaces, their policies rule.
            if s is d or NAMESPACE not in (s.ns, d.ns):
                continue
            for _, port, proto in d.ports:
                allowed[(s.id, d.id, port, proto)] = policies.allowed(s, d, port, proto)
    extra = sorted(k for k, v in allowed.items() if v and k not in want)
    missing = sorted(k for k in want if not allowed.get(k))
    fmt = lambda k: f"{k[0]} -> {k[1]}:{k[2]}/{k[3]}"  # noqa: E731
    report.check(f"{label}: connections evaluated (every caller x every port)", len(allowed), [])
    report.check(f"{label}: calls of the call graph allowed", len(want),
                 [f"denied but needed: {fmt(k)}" for k in missing])
    report.check(f"{label}: all other connections denied", len(allowed) - len(want),
                 [f"allowed but not in the call graph: {fmt(k)}" for k in extra])

    # The forbidden calls the architecture names, counted on their own.
    pods_by = {p.id: p for p in pods}
    roles = defaultdict(list)
    for p in pods:
        roles[p.acts_as].append(p)
    stores = {db: STORE_PORT[db.split("-")[0]] for db in DATABASE.values()}
    fails, n = [], 0
    for s in pods:
        for db, port in stores.items():
            if DATABASE.get(s.acts_as) == db or db not in pods_by:
                continue
            n += 1
            if allowed.get((s.id, db, port, "TCP")):
                fails.append(f"{s.id} reaches {db}:{port}")
    report.check(f"{label}: no one reaches another service's database", n, fails)
    fails, n = [], 0
    for s in sources:
        for d in roles["storefront"]:
            if s.acts_as in ("gateway", "storefront") or s.id == "prometheus":
                continue
            n += 1
            if allowed.get((s.id, d.id, 3000, "TCP")):
                fails.append(f"{s.id} reaches the storefront")
    report.check(f"{label}: the storefront only from the gateway (and Prometheus)", n, fails)
    fails, n = [], 0
    for s in (world["ingress-nginx"], world["debug-pod-elsewhere"], world["grafana"],
              world["debug-pod-in-production"]):
        for d in pods:
            for _, port, proto in d.ports:
                if s.id == "ingress-nginx" and d.acts_as == "gateway" and port == 8080:
                    continue
                n += 1
                if allowed.get((s.id, d.id, port, proto)):
                    fails.append(f"{s.id} reaches {d.id}:{port}")
    report.check(f"{label}: from outside, only the Ingress controller, to the gateway", n, fails)
    fails, n = [], 0
    mports = metrics_ports()
    for d in pods:
        for _, port, proto in d.ports:
            if mports.get(d.acts_as) == port:
                continue
            n += 1
            if allowed.get(("prometheus", d.id, port, proto)):
                fails.append(f"prometheus reaches {d.id}:{port}")
    report.check(f"{label}: Prometheus only at metrics ports", n, fails)


# ------------------------------------------------------------------- asserts

def check_services(docs, report):
    deployments = by_name(docs, "Deployment")
    services = by_name(docs, "Service")
    fails = []
    for name, (http, grpc) in SPEC.items():
        d, s = deployments.get(name), services.get(name)
        if d is None:
            fails.append(f"no Deployment {name}")
            continue
        if s is None:
            fails.append(f"no Service {name}")
            continue
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        if not selects({"matchLabels": s["spec"].get("selector") or {"": "none"}}, pod_labels):
            fails.append(f"Service {name} does not select the Deployment's pods")
        c = pod_spec(d)["containers"][0]
        if c.get("args", [])[:2] != ["serve", name] or c.get("command") != ["emporium"]:
            fails.append(f"{name} does not run `emporium serve {name}`")
        if not c["image"].split("/")[-1].startswith("emporium:"):
            fails.append(f"{name} runs {c['image']}, not the one image")
        cports = {p["containerPort"] for p in c.get("ports", [])}
        named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        want = {http} | ({grpc} if grpc else set()) | ({GATEWAY_INTERNAL} if name == "gateway" else set())
        sports = {p["port"]: p for p in s["spec"]["ports"]}
        for port in want:
            if port not in cports:
                fails.append(f"{name} container does not listen on {port}")
            if port not in sports:
                fails.append(f"Service {name} has no port {port}")
                continue
            target = sports[port].get("targetPort", port)
            if named.get(target, target) != port:
                fails.append(f"Service {name} port {port} goes to {target}")
        if set(sports) - want:
            fails.append(f"Service {name} exposes {sorted(set(sports) - want)} beyond SPEC §1")
        port_env = env_value(c, "PORT")
        if port_env != str(http):
            fails.append(f"{name} PORT={port_env}, SPEC says {http}")
        if grpc and env_value(c, "GRPC_PORT") != str(grpc):
            fails.append(f"{name} GRPC_PORT={env_value(c, 'GRPC_PORT')}, SPEC says {grpc}")
    report.check("production: SPEC §1 services each a Deployment and a Service, its ports",
                 len(SPEC), fails)


def check_deployments(docs, report, label="production"):
    fails, n = [], 0
    for d in objects(docs, "Deployment", NAMESPACE):
        name = d["metadata"]["name"]
        for c in pod_spec(d)["containers"]:
            n += 1
            who = f"{name}/{c['name']}"
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    fails.append(f"{who} has no {probe}")
            path, port = probe_port(c, "livenessProbe")
            role = d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name")
            if role in SPEC:
                if path != "/health" or port != SPEC[role][0]:
                    fails.append(f"{who} liveness is {path} on {port}, not /health on {SPEC[role][0]}")
                ready_port = GATEWAY_INTERNAL if role == "gateway" else SPEC[role][0]
                path, port = probe_port(c, "readinessProbe")
                if path != "/ready" or port != ready_port:
                    fails.append(f"{who} readiness is {path} on {port}, not /ready on {ready_port}")
                mem = (c.get("resources", {}).get("requests") or {}).get("memory")
                limit = (c.get("resources", {}).get("limits") or {}).get("memory")
                if mem and quantity(mem) <= IDLE_RSS_MAX:
                    fails.append(f"{who} requests {mem}, not above the measured idle RSS")
                if limit and quantity(limit) < LOADED_RSS:
                    fails.append(f"{who} is limited to {limit}, below the RSS measured under load")
            for kind in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if res not in (c.get("resources", {}).get(kind) or {}):
                        fails.append(f"{who} has no {res} {kind}")
    report.check(f"{label}: Deployments probe /health and /ready, requests and limits", n, fails)


def check_pod_security(docs, report, label="production"):
    """Every pod of the namespace: the `restricted` Pod Security profile,
    read-only root, resources, and no service links."""
    fails, n = [], 0
    ns = {d["metadata"]["name"]: d for d in objects(docs, "Namespace")}
    if (ns.get(NAMESPACE, {}).get("metadata", {}).get("labels") or {}).get(
            "pod-security.kubernetes.io/enforce") != "restricted":
        fails.append(f"namespace {NAMESPACE} does not enforce the restricted profile")
    for kind in ("Deployment", "StatefulSet", "Job"):
        for w in objects(docs, kind, NAMESPACE):
            spec = pod_spec(w)
            psc = spec.get("securityContext") or {}
            name = f"{kind}/{w['metadata']['name']}"
            if spec.get("enableServiceLinks") is not False:
                fails.append(f"{name}: service links on (REDIS_PORT=tcp://… in the environment)")
            if spec.get("automountServiceAccountToken") is not False:
                fails.append(f"{name}: mounts a service account token it does not use")
            for v in spec.get("volumes", []):
                if "hostPath" in v:
                    fails.append(f"{name}: hostPath volume {v['name']}")
            for c in containers(w):
                n += 1
                sc = c.get("securityContext") or {}
                who = f"{name}/{c['name']}"
                if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                    fails.append(f"{who} may run as root")
                if sc.get("runAsUser", psc.get("runAsUser")) in (0, None):
                    fails.append(f"{who} has no numeric non-root user")
                if sc.get("readOnlyRootFilesystem") is not True:
                    fails.append(f"{who} has a writable root filesystem")
                if sc.get("allowPrivilegeEscalation") is not False:
                    fails.append(f"{who} allows privilege escalation")
                if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                    fails.append(f"{who} keeps capabilities")
                if (sc.get("capabilities") or {}).get("add"):
                    fails.append(f"{who} adds capabilities")
                seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
                if seccomp != "RuntimeDefault":
                    fails.append(f"{who} seccomp is {seccomp}")
                for kind_ in ("requests", "limits"):
                    for res in ("cpu", "memory"):
                        if res not in (c.get("resources", {}).get(kind_) or {}):
                            fails.append(f"{who} has no {res} {kind_}")
                if kind != "Job" and not ("livenessProbe" in c and "readinessProbe" in c):
                    fails.append(f"{who} lacks a liveness or readiness probe")
    report.check(f"{label}: every container non-root, read-only root, no privileges, seccomp",
                 n, fails)


def check_autoscaling(docs, report):
    hpas = by_name(docs, "HorizontalPodAutoscaler")
    pdbs = by_name(docs, "PodDisruptionBudget")
    deployments = by_name(docs, "Deployment")
    fails = []
    for name, (low, high) in HPA_BOUNDS.items():
        h = hpas.get(name)
        if h is None:
            fails.append(f"no HorizontalPodAutoscaler for {name}")
            continue
        target = h["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) != ("Deployment", name):
            fails.append(f"{name}'s autoscaler scales {target['kind']}/{target['name']}")
        bounds = (h["spec"].get("minReplicas", 1), h["spec"]["maxReplicas"])
        if bounds != (low, high):
            fails.append(f"{name} scales {bounds[0]}–{bounds[1]}, seed 004 says {low}–{high}")
        if not any(m["type"] == "Resource" and m["resource"]["name"] == "cpu"
                   for m in h["spec"].get("metrics", [])):
            fails.append(f"{name} does not scale by CPU")
        if name in deployments and "replicas" in deployments[name]["spec"]:
            fails.append(f"{name}'s Deployment sets replicas, which the autoscaler owns")
    report.check("production: autoscaler bounds (storefront 2–5, the rest 3–10, by CPU)",
                 len(HPA_BOUNDS), fails)
    fails = []
    for name in SPEC:
        p, d = pdbs.get(name), deployments.get(name)
        if p is None or d is None:
            fails.append(f"no PodDisruptionBudget for {name}")
            continue
        if not selects(p["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]):
            fails.append(f"{name}'s PodDisruptionBudget does not select its pods")
        if "maxUnavailable" not in p["spec"] and "minAvailable" not in p["spec"]:
            fails.append(f"{name}'s PodDisruptionBudget allows nothing")
    report.check("production: a PodDisruptionBudget per service, selecting its pods", len(SPEC), fails)


def check_wiring(docs, report):
    """Each service's settings name the peers, stores and broker that the
    call graph (and so the NetworkPolicies) give it, at SPEC's ports."""
    deployments = by_name(docs, "Deployment")
    services = by_name(docs, "Service")
    workloads = {**by_name(docs, "StatefulSet"), **deployments}
    graph = call_graph()
    fails, n = [], 0

    def host_is(host, workload):
        s = services.get(host)
        w = workloads.get(workload)
        return s is not None and w is not None and selects(
            {"matchLabels": s["spec"].get("selector") or {"": "none"}},
            w["spec"]["template"]["metadata"]["labels"])

    for name in SPEC:
        if name not in deployments:
            fails.append(f"no Deployment {name} to read the settings of")
            continue
        c = pod_spec(deployments[name])["containers"][0]
        env = env_of(c)
        n += 1
        peers = {}
        for var, e in env.items():
            if var.endswith("_SERVICE_URL"):
                peer = "catalog" if var == "PRODUCT_SERVICE_URL" else var[:-12].lower()
                peers[peer] = e.get("value")
        want = {d for s, d, port, why in graph if s == name and why == "gRPC"}
        if set(peers) != want:
            fails.append(f"{name} is told of peers {sorted(peers)}, calls {sorted(want)}")
        for peer, url in peers.items():
            if peer in SPEC and url != f"http://{peer}:{SPEC[peer][1]}":
                fails.append(f"{name}: {peer} at {url}, SPEC's gRPC port is {SPEC[peer][1]}")
        jwks = env_value(c, "EMPORIUM__AUTH__JWKS_URL")
        if name == "identity":
            if jwks is not None:
                fails.append("identity fetches its own JWKS")
        elif jwks != "http://identity:8004/.well-known/jwks.json":
            fails.append(f"{name} verifies tokens with {jwks}")
        db_host = env_value(c, "DB_HOST")
        if name in DATABASE:
            if not host_is(db_host, DATABASE[name]):
                fails.append(f"{name}'s DB_HOST {db_host} is not its own database {DATABASE[name]}")
            if env_value(c, "DB_USER") != name or env_value(c, "DB_NAME") != name:
                fails.append(f"{name} connects as {env_value(c, 'DB_USER')} to {env_value(c, 'DB_NAME')}")
        elif db_host is not None:
            fails.append(f"{name} has a database {db_host}, the code keeps none")
        redis = env_value(c, "REDIS_HOST")
        if (name in REDIS_USERS) != (redis is not None) or (redis and not host_is(redis, "redis")):
            fails.append(f"{name}: Redis at {redis}, used: {name in REDIS_USERS}")
        amqp = env_value(c, "AMQP_URL")
        if (name in BROKER_USERS) != (amqp is not None) or (amqp and "@rabbitmq:5672/" not in amqp):
            fails.append(f"{name}: broker {amqp}, used: {name in BROKER_USERS}")
    if "gateway" not in deployments or "storefront" not in deployments:
        report.check("production: settings wired to the call graph (peers, JWKS, stores, broker, secrets)", n, fails)
        return
    gw = env_of(pod_spec(deployments["gateway"])["containers"][0])
    upstreams = {k.rsplit("__", 1)[1].lower(): v.get("value") for k, v in gw.items()
                 if k.startswith("EMPORIUM__GATEWAY__UPSTREAMS__")}
    n += 1
    for s in APIS + ["storefront"]:
        if upstreams.get(s) != f"http://{s}:{SPEC[s][0]}":
            fails.append(f"the gateway finds {s} at {upstreams.get(s)}")
    if set(upstreams) - set(APIS + ["storefront"]):
        fails.append(f"the gateway has upstreams {sorted(set(upstreams) - set(APIS))}")
    if env_value(pod_spec(deployments["gateway"])["containers"][0],
                 "EMPORIUM__GATEWAY__INTERNAL_ADDR") != f"0.0.0.0:{GATEWAY_INTERNAL}":
        fails.append("the gateway's internal listener is not on 0.0.0.0:9080")
    sf = pod_spec(deployments["storefront"])["containers"][0]
    if env_value(sf, "EMPORIUM__STOREFRONT__API_URL") != "http://gateway:8080":
        fails.append("the storefront does not call the gateway at http://gateway:8080")
    # Service secrets: each caller its own; identity every caller's.
    callers = sorted(GRPC_PEERS)
    for name in SPEC:
        if name not in deployments:
            continue
        c = pod_spec(deployments[name])["containers"][0]
        held = sorted(k.rsplit("__", 1)[1].lower() for k in env_of(c)
                      if k.startswith("EMPORIUM__AUTH__SERVICE_SECRETS__"))
        want = callers if name == "identity" else ([name] if name in callers else [])
        if held != want:
            fails.append(f"{name} holds the service secrets of {held}, should hold {want}")
    report.check("production: settings wired to the call graph (peers, JWKS, stores, broker, secrets)", n, fails)


def check_stores(docs, report):
    sts = by_name(docs, "StatefulSet")
    fails = []
    for name, s in sts.items():
        if not s["spec"].get("volumeClaimTemplates"):
            fails.append(f"{name} keeps its data in no volume claim")
    owners = defaultdict(list)
    for name, db in DATABASE.items():
        owners[db].append(name)
        if db not in sts:
            fails.append(f"no StatefulSet {db} for {name}")
    for db, names in owners.items():
        if len(names) != 1:
            fails.append(f"{db} is shared by {names}")
    pg = [n for n, s in sts.items() if pod_spec(s)["containers"][0]["image"].startswith("postgres:")]
    if sorted(pg) != sorted(db for db in DATABASE.values() if db.startswith("postgres-")):
        fails.append(f"PostgreSQL StatefulSets {sorted(pg)}")
    for name in ("redis", "rabbitmq", "minio", "mariadb-payment"):
        if name not in sts:
            fails.append(f"no StatefulSet {name}")
    migrations = {j["metadata"]["name"] for j in objects(docs, "Job", NAMESPACE)
                  if (j["spec"]["template"]["metadata"].get("labels") or {}).get(
                      "app.kubernetes.io/component") == "migration"}
    for name in DATABASE:
        job = f"migrate-{name}"
        if job not in migrations:
            fails.append(f"no migration Job for {name}")
            continue
        j = by_name(docs, "Job")[job]
        c = pod_spec(j)["containers"][0]
        if c.get("args") != ["migrate", name]:
            fails.append(f"{job} runs {c.get('args')}")
        if (j["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") != name):
            fails.append(f"{job}'s pods do not carry {name}'s name (and policies)")
    report.check("production: stores on volume claims, one database per service, migration Jobs",
                 len(sts) + len(DATABASE), fails)


def references(docs):
    """(kind, name, key, optional) of every Secret and ConfigMap a pod reads."""
    out = []
    for kind in ("Deployment", "StatefulSet", "Job"):
        for w in objects(docs, kind, NAMESPACE):
            for c in containers(w):
                for e in c.get("env", []):
                    src = e.get("valueFrom") or {}
                    for ref_kind, field in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                        if field in src:
                            r = src[field]
                            out.append((ref_kind, r["name"], r["key"], r.get("optional", False)))
                for e in c.get("envFrom", []):
                    for ref_kind, field in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                        if field in e:
                            out.append((ref_kind, e[field]["name"], None, e[field].get("optional", False)))
            for v in pod_spec(w).get("volumes", []):
                if "secret" in v:
                    out.append(("Secret", v["secret"]["secretName"], None, v["secret"].get("optional", False)))
                if "configMap" in v:
                    out.append(("ConfigMap", v["configMap"]["name"], None, v["configMap"].get("optional", False)))
    return out


def check_secrets(production, dev, report):
    fails = []
    refs = references(production)
    secrets = {r[1] for r in refs if r[0] == "Secret"}
    if objects(production, "Secret"):
        fails.append(f"the production overlay defines Secrets {[d['metadata']['name'] for d in objects(production, 'Secret')]}")
    for label, docs in (("production", production), ("dev", dev)):
        maps = by_name(docs, "ConfigMap")
        for kind, name, key, optional in references(docs):
            if kind == "ConfigMap" and not optional:
                if name not in maps:
                    fails.append(f"{label}: ConfigMap {name} is referenced and missing")
                elif key and key not in (maps[name].get("data") or {}):
                    fails.append(f"{label}: ConfigMap {name} has no {key}")
    defined = by_name(dev, "Secret")
    dev_refs = references(dev)
    for kind, name, key, optional in dev_refs:
        if kind != "Secret" or optional:
            continue
        if name not in defined:
            fails.append(f"dev: Secret {name} is referenced and not generated")
        elif key and key not in (defined[name].get("data") or {}):
            fails.append(f"dev: Secret {name} has no key {key}")
    report.check("Secrets: referenced in production (none there), all made in dev",
                 len(secrets) + len(dev_refs), fails)
    return sorted(secrets)


def check_scrape_jobs(docs, prometheus_yml, report):
    """The ServiceMonitors give the jobs that deploy/observability's rules,
    alerts and dashboards read, at the same ports."""
    with open(prometheus_yml, encoding="utf-8") as f:
        prom = yaml.safe_load(f)
    want = {}
    for job in prom["scrape_configs"]:
        name = job["job_name"]
        port = None
        for sd in job.get("dns_sd_configs", []):
            port = sd.get("port")
        for sc in job.get("static_configs", []):
            for t in sc.get("targets", []):
                if ":" in t and t.split(":")[-1].isdigit():
                    port = int(t.split(":")[-1])
        want[name] = (port, job.get("metrics_path", "/metrics"), job.get("params"))
    services = objects(docs, "Service")
    have = defaultdict(set)
    fails = []
    for sm in objects(docs, "ServiceMonitor"):
        spec = sm["spec"]
        namespaces = (spec.get("namespaceSelector") or {}).get("matchNames") or [sm["metadata"]["namespace"]]
        for s in services:
            if s["metadata"]["namespace"] not in namespaces:
                continue
            labels = s["metadata"].get("labels") or {}
            if not selects(spec["selector"], labels):
                continue
            for ep in spec["endpoints"]:
                ports = [p for p in s["spec"]["ports"] if p.get("name") == ep.get("port")]
                if not ports:
                    fails.append(f"{sm['metadata']['name']}: Service {s['metadata']['name']} has no port {ep.get('port')}")
                    continue
                job = labels.get(spec["jobLabel"]) if spec.get("jobLabel") else s["metadata"]["name"]
                for r in ep.get("relabelings", []):
                    if r.get("targetLabel") == "job" and r.get("action", "replace") == "replace" \
                            and not r.get("sourceLabels"):
                        job = r["replacement"]
                if job in SPEC and not ep.get("honorLabels"):
                    fails.append(f"job {job}: the operator's `service` label would overwrite the shop's")
                have[job].add((ports[0]["port"], ep.get("path", "/metrics"),
                               json.dumps(ep.get("params"), sort_keys=True) if ep.get("params") else None))
    expected = list(SPEC) + ["postgres", "redis", "rabbitmq", "rabbitmq-queues"]
    for job in expected:
        if job not in want:
            fails.append(f"{prometheus_yml} has no job {job}")
            continue
        if job not in have:
            fails.append(f"no ServiceMonitor gives the job {job}")
            continue
        port, path, params = want[job]
        got_ports = {p for p, _, _ in have[job]}
        got_paths = {pa for _, pa, _ in have[job]}
        if job in SPEC and got_ports != {port}:
            fails.append(f"job {job} scrapes port {sorted(got_ports)}, prometheus.yml says {port}")
        if got_paths != {path}:
            fails.append(f"job {job} scrapes {sorted(got_paths)}, prometheus.yml says {path}")
        if params and {pr for _, _, pr in have[job]} != {json.dumps(params, sort_keys=True)}:
            fails.append(f"job {job} params differ from prometheus.yml")
    extra = set(have) - set(expected)
    if extra:
        fails.append(f"jobs {sorted(extra)} that the observability files do not know")
    report.check("production: scrape jobs as deploy/observability names them, same ports and paths",
                 len(expected), fails)


def check_dev(dev, report):
    fails = []
    if objects(dev, "HorizontalPodAutoscaler"):
        fails.append("the dev overlay keeps autoscalers")
    deployments = objects(dev, "Deployment", NAMESPACE)
    for d in deployments:
        if d["spec"].get("replicas") != 1:
            fails.append(f"dev {d['metadata']['name']} runs {d['spec'].get('replicas')} replicas")
    if objects(dev, "Ingress"):
        fails.append("the dev overlay has an Ingress")
    if objects(dev, "ServiceMonitor"):
        fails.append("the dev overlay has ServiceMonitors, which need the Prometheus Operator")
    report.check("dev: one replica each, no autoscaler, Ingress or ServiceMonitor", len(deployments), fails)


def check_rps(rps, report):
    fails = []
    hpas = objects(rps, "HorizontalPodAutoscaler")
    for h in hpas:
        metrics = h["spec"]["metrics"]
        if not any(m["type"] == "Pods" and m["pods"]["metric"]["name"] == "http_requests_per_second"
                   for m in metrics):
            fails.append(f"{h['metadata']['name']} does not scale by requests per second")
        if not any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics):
            fails.append(f"{h['metadata']['name']} no longer scales by CPU")
    if len(hpas) != len(SPEC):
        fails.append(f"{len(hpas)} autoscalers, {len(SPEC)} services")
    report.check("requests-per-second component: every autoscaler by CPU and req/s", len(hpas), fails)


def check_istio(istio, report):
    fails = []
    deployments = by_name(istio, "Deployment")
    stable, canary = deployments.get("catalog"), deployments.get("catalog-canary")
    if stable is None or canary is None:
        fails.append("no catalog canary beside the stable catalog")
    else:
        a, b = pod_spec(stable), pod_spec(canary)
        ca, cb = dict(a["containers"][0]), dict(b["containers"][0])
        if ca.pop("image") == cb.pop("image"):
            fails.append("the canary runs the stable image")
        if ca != cb:
            fails.append("the canary's container differs from the stable one beyond its image")
        rest = lambda s: {k: v for k, v in s.items() if k != "containers"}  # noqa: E731
        if rest(a) != rest(b):
            fails.append("the canary's pod differs from the stable one")
        if canary["spec"].get("replicas") != 1:
            fails.append("the canary is not one pod")
        la = stable["spec"]["template"]["metadata"]["labels"]
        lb = canary["spec"]["template"]["metadata"]["labels"]
        if selects(stable["spec"]["selector"], lb) or selects(canary["spec"]["selector"], la):
            fails.append("the stable and canary Deployments' selectors overlap")
        service = by_name(istio, "Service")["catalog"]
        if not (selects({"matchLabels": service["spec"]["selector"]}, la)
                and selects({"matchLabels": service["spec"]["selector"]}, lb)):
            fails.append("the catalog Service does not reach both tracks")
        rules = by_name(istio, "DestinationRule")
        services = by_name(istio, "VirtualService")
        dr, vs = rules.get("catalog"), services.get("catalog")
        if dr is None or vs is None:
            fails.append("no DestinationRule and VirtualService for the catalog")
        else:
            subsets = {s["name"]: s["labels"] for s in dr["spec"]["subsets"]}
            for subset, labels, other in (("stable", la, lb), ("canary", lb, la)):
                sel = {"matchLabels": subsets.get(subset, {"": "none"})}
                if not selects(sel, labels) or selects(sel, other):
                    fails.append(f"subset {subset} does not select exactly the {subset} pods")
            host = "catalog.production.svc.cluster.local"
            if dr["spec"]["host"] != host or vs["spec"]["hosts"] != [host]:
                fails.append("the routing is not for the catalog's Service")
            weights = Counter()
            for route in vs["spec"]["http"]:
                for r in route["route"]:
                    weights[r["destination"].get("subset")] += r.get("weight", 100)
            if dict(weights) != {"stable": 90, "canary": 10}:
                fails.append(f"the split is {dict(weights)}, not 90/10")
    pas = by_name(istio, "PeerAuthentication")
    default = pas.get("default")
    if default is None or default["spec"].get("selector") or default["spec"]["mtls"]["mode"] != "STRICT":
        fails.append("mTLS is not STRICT for the whole namespace")
    for name, pa in pas.items():
        if name == "default":
            continue
        labels = pa["spec"].get("selector", {}).get("matchLabels", {})
        if labels != {"app.kubernetes.io/name": "gateway"} or pa["spec"]["mtls"]["mode"] != "STRICT":
            fails.append(f"PeerAuthentication {name} loosens more than the gateway's ports")
        loose = {int(p) for p, m in (pa["spec"].get("portLevelMtls") or {}).items()
                 if m.get("mode") != "STRICT"}
        if loose - {8080, GATEWAY_INTERNAL}:
            fails.append(f"PeerAuthentication {name} loosens ports {sorted(loose)}")
    ns = by_name(istio, "Namespace", None).get(NAMESPACE)
    if (ns["metadata"].get("labels") or {}).get("istio-injection") != "enabled":
        fails.append("no sidecar injection in production")
    for kind in ("StatefulSet", "Job"):
        for w in objects(istio, kind, NAMESPACE):
            ann = w["spec"]["template"]["metadata"].get("annotations") or {}
            if ann.get("sidecar.istio.io/inject") != "false":
                fails.append(f"{kind}/{w['metadata']['name']} would get a sidecar")
    n = len(objects(istio, "StatefulSet", NAMESPACE)) + len(objects(istio, "Job", NAMESPACE)) + 6
    report.check("istio-canary: 10 % to an identical canary, mTLS STRICT, stores and Jobs outside",
                 n, fails)


def assert_all(args):
    report = Report()
    production, dev = load(args.production), load(args.dev)
    istio, rps = load(args.istio), load(args.rps)
    check_services(production, report)
    check_deployments(production, report)
    check_pod_security(production, report)
    check_autoscaling(production, report)
    check_wiring(production, report)
    check_stores(production, report)
    secrets = check_secrets(production, dev, report)
    check_scrape_jobs(production, args.prometheus, report)
    evaluate_policies(production, False, report, "production")
    check_dev(dev, report)
    check_pod_security(dev, report, "dev")
    evaluate_policies(dev, False, report, "dev")
    check_rps(rps, report)
    check_istio(istio, report)
    check_deployments(istio, report, "istio-canary")
    check_pod_security(istio, report, "istio-canary")
    evaluate_policies(istio, True, report, "istio-canary")
    print(f"Secrets production expects: {', '.join(secrets)}")
    return report.print()


# ------------------------------------------------------------------- config

REDIS_KEY = {"gateway": "rate_limit_url", "catalog": "cache_url", "basket": "redis_url",
             "inventory": "cache_url", "ordering": "redis_url", "payment": "redis_url",
             "notification": "redis_url"}


def pod_environment(container, configmaps, secrets):
    """The environment Kubernetes gives the container: envFrom first, then
    env in order, `$(VAR)` expanded from what is defined before it."""
    import base64

    env = {}
    for e in container.get("envFrom", []):
        if "configMapRef" in e:
            env.update(configmaps[e["configMapRef"]["name"]].get("data") or {})
        if "secretRef" in e:
            for k, v in (secrets[e["secretRef"]["name"]].get("data") or {}).items():
                env[k] = base64.b64decode(v).decode()
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                    lambda m: env.get(m.group(1), m.group(0)), e["value"])
            continue
        src = e["valueFrom"]
        if "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            data = (secrets.get(ref["name"]) or {}).get("data") or {}
            if ref["key"] in data:
                env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
            elif not ref.get("optional"):
                raise KeyError(f"Secret {ref['name']} has no {ref['key']}")
        elif "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            env[e["name"]] = configmaps[ref["name"]]["data"][ref["key"]]
    return env


def config(binary, dev_path):
    import tomllib

    report = Report()
    docs = load(dev_path)
    configmaps, secrets = by_name(docs, "ConfigMap"), by_name(docs, "Secret")
    graph = call_graph()
    fails, n = [], 0
    redis_dbs = {}
    for kind in ("Deployment", "Job"):
        for w in objects(docs, kind, NAMESPACE):
            c = pod_spec(w)["containers"][0]
            if c.get("command") != ["emporium"]:
                continue
            verb, service = c["args"][0], c["args"][1]
            who = f"{kind}/{w['metadata']['name']}"
            n += 1
            try:
                env = pod_environment(c, configmaps, secrets)
            except KeyError as e:
                fails.append(f"{who}: {e}")
                continue
            with tempfile.TemporaryDirectory() as cwd:
                run = subprocess.run([binary, "config", service], env=env, cwd=cwd,
                                     capture_output=True, text=True)
            if run.returncode != 0:
                fails.append(f"{who}: `emporium config {service}` refused its environment: "
                             f"{run.stderr.strip()}")
                continue
            settings = tomllib.loads(run.stdout)
            own = settings.get(service, {})
            http, grpc = SPEC[service]
            want = {"http_addr": f"0.0.0.0:{http}"}
            if grpc:
                want["grpc_addr"] = f"0.0.0.0:{grpc}"
            if service in DATABASE:
                db = DATABASE[service]
                scheme, port = ("mysql", 3306) if db.startswith("mariadb") else ("postgres", 5432)
                want["database_url"] = f"{scheme}://{service}:****@{db}:{port}/{service}"
            if service == "gateway":
                want["internal_addr"] = f"0.0.0.0:{GATEWAY_INTERNAL}"
                want["upstreams"] = {s: [f"http://{s}:{SPEC[s][0]}"] for s in APIS + ["storefront"]}
            if service == "storefront":
                want["api_url"] = "http://gateway:8080"
            if service == "catalog":
                want["objects_url"] = "s3://emporium-images"
            if verb == "migrate":  # a migration needs the database alone
                want = {k: v for k, v in want.items() if k == "database_url"}
            for key, value in want.items():
                if verb != "serve" and key in ("http_addr", "grpc_addr", "internal_addr"):
                    continue
                if own.get(key) != value:
                    fails.append(f"{who}: {service}.{key} is {own.get(key)!r}, not {value!r}")
            if service in REDIS_KEY and verb != "migrate":
                url = own.get(REDIS_KEY[service], "")
                m = re.fullmatch(r"redis://:\*\*\*\*@redis:6379/(\d+)", str(url))
                if not m:
                    fails.append(f"{who}: {service}.{REDIS_KEY[service]} is {url!r}")
                elif verb == "serve":
                    redis_dbs.setdefault(m.group(1), set()).add(service)
            if verb != "serve":
                continue
            bus = settings.get("bus", {}).get("url")
            want_bus = ("amqp://emporium:****@rabbitmq:5672/%2f" if service in BROKER_USERS
                        else "memory://")
            if bus != want_bus:
                fails.append(f"{who}: bus.url is {bus!r}, not {want_bus!r}")
            peers = settings.get("peers", {})
            want_peers = {d: f"http://{d}:{p}" for s, d, p, why in graph
                          if s == service and why == "gRPC"}
            if peers != want_peers:
                fails.append(f"{who}: peers {peers}, not {want_peers}")
            auth = settings.get("auth", {})
            jwks = None if service == "identity" else "http://identity:8004/.well-known/jwks.json"
            if auth.get("jwks_url") != jwks or auth.get("trusted_network") is not True:
                fails.append(f"{who}: JWKS {auth.get('jwks_url')}, trusted network "
                             f"{auth.get('trusted_network')}")
            held = sorted(k for k, v in (auth.get("service_secrets") or {}).items() if v)
            callers = sorted(GRPC_PEERS)
            want_held = callers if service == "identity" else (
                [service] if service in callers else [])
            if held != want_held:
                fails.append(f"{who}: holds the service secrets of {held}, not {want_held}")
            if service == "identity" and not own.get("key_encryption_keys"):
                fails.append(f"{who}: no key-encryption keys")
            if service in ("ordering", "payment") and not own.get("fingerprint_key"):
                fails.append(f"{who}: no fingerprint key shared by its replicas")
    for db, users in redis_dbs.items():
        if len(users) > 1:
            fails.append(f"Redis database {db} shared by {sorted(users)}")
    report.check("dev workloads' environments, as `emporium config` reads them", n, fails)
    return report.print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate")
    v.add_argument("checker_dir")
    v.add_argument("rendered", nargs="+")
    c = sub.add_parser("config")
    c.add_argument("binary")
    c.add_argument("dev")
    a = sub.add_parser("assert")
    for flag in ("--production", "--dev", "--istio", "--rps", "--prometheus"):
        a.add_argument(flag, required=True)
    args = parser.parse_args()
    if args.command == "validate":
        ok = validate(args.checker_dir, args.rendered)
    elif args.command == "config":
        ok = config(args.binary, args.dev)
    else:
        ok = assert_all(args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
