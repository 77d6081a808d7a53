"""What deploy/compose/check asks of the Compose files and the Dockerfile,
beyond what `docker-compose config` and hadolint say.

  python3 check.py files [--docker-compose PATH] [--binary PATH]
      every check on the repo's files; exits 1 on any failure
  python3 check.py self-test [--docker-compose PATH] [--hadolint PATH]
      each check on a copy of the files broken on purpose: every one must
      fail, or the check proves nothing

The checks (each a function below, each named in its failures):
  variables   every ${VAR} of the Compose file has a value in .env.example,
              and .env.example holds nothing the file does not use
  secrets     no password, secret or key written into the Compose file; the
              real .env is ignored by git
  images      the shop's services run the one image, built from the
              Dockerfile; every other image is pinned to a version
  ports       each service's ports are SPEC §1's, and every address the
              files give (peers, upstreams, JWKS, Prometheus's targets,
              the observability stack's wiring) names a service and a port
              it listens on
  depends     every depends_on target exists (in a profile that runs with
              it), has a health check when `service_healthy` is asked and is
              a one-shot when `service_completed_successfully` is
  mounts      every file or folder mounted from the repo exists, host paths
              are the few the exporters need, named volumes are declared
  limits      every service has CPU and memory limits
  dockerfile  non-root numeric user, HEALTHCHECK, entrypoint `emporium`, the
              toolchain of rust-toolchain.toml, every COPY source inside the
              build context that /.dockerignore leaves, and no .git, target
              or .env in it
  settings    (with --binary) `emporium config` accepts each service's
              environment: no variable names a setting that does not exist
"""

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# SPEC §1, shared with the other deploy checker (deploy/spec_ports.py).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spec_ports import GATEWAY_INTERNAL, SPEC_PORTS  # noqa: E402
# Host paths that exporters and Promtail read; anything else is refused.
HOST_PATHS = {"/", "/sys", "/var/run", "/var/lib/docker/", "/dev/disk/", "/var/run/docker.sock"}
# Ports third-party services listen on, as the files name them.
THIRD_PARTY_PORTS = {
    "postgres": {5432},
    "mariadb": {3306},
    "redis": {6379},
    "rabbitmq": {5672, 15672, 15692},
    "minio": {9000, 9001},
    "postgres-exporter": {9187},
    "redis-exporter": {9121},
    "node-exporter": {9100},
    "cadvisor": {8080},
    "blackbox-exporter": {9115},
    "prometheus": {9090},
    "alertmanager": {9093},
    "alert-webhook": {9095},
    "grafana": {3000},
    "loki": {3100, 9096},
    "promtail": {9180},
    "tempo": {3200, 4317, 4318},
    "otel-collector": {4317, 4318, 8888, 13133},
}
SECRET_NAME = re.compile(r"PASSWORD|PASS$|SECRET|_KEY$|_KEYS$|AUTH$")
PINNED = re.compile(r"^[\w./-]+(:[\w.-]*\d[\w.-]*)(@sha256:[0-9a-f]{64})?$|^[\w./-]+@sha256:[0-9a-f]{64}$")
VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class Files:
    """The files a check reads, so that self-test can hand it broken copies."""

    def __init__(self, root):
        self.root = root
        self.compose_path = os.path.join(root, "deploy/compose/docker-compose.yml")
        self.env_path = os.path.join(root, "deploy/compose/.env.example")
        self.dockerfile_path = os.path.join(root, "deploy/docker/Dockerfile")
        self.dockerignore_path = os.path.join(root, ".dockerignore")
        with open(self.compose_path) as f:
            self.raw = f.read()
        self.compose = yaml.safe_load(self.raw)
        self.env = read_env(self.env_path)
        self.services = self.compose.get("services", {})
        self.resolved = interpolate(self.compose, self.env)


def read_env(path):
    """KEY=VALUE lines, as Compose reads an env file."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            env[key.strip()] = value
    return env


def interpolate(value, env):
    """The Compose file with ${VAR}s replaced as Compose does ($$ is $)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, str):
        def one(match):
            if match.group(0) == "$$":
                return "$"
            name = match.group(1) or match.group(2)
            text = match.group(0)
            if name in env and env[name] != "":
                return env[name]
            if ":-" in text or "-" in text[2 + len(name):]:
                return text.split("-", 1)[1].rstrip("}")
            return env.get(name, "")
        return VAR.sub(one, value)
    return value


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def is_emporium(service):
    return isinstance(service, dict) and service.get("image") == "${EMPORIUM_IMAGE}"


def spec_ports():
    """(ports by service, where they were read)."""
    spec = os.path.join(os.path.dirname(REPO), "shared", "SPEC.md")
    if not os.path.exists(spec):
        return SPEC_PORTS, "the table in check.py (../shared/SPEC.md is not beside the repo)"
    ports = {}
    with open(spec) as f:
        text = f.read()
    section = text.split("## 1.", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"[a-z]+", cells[0]) and cells[2].isdigit():
            ports[cells[0]] = (int(cells[2]), int(cells[3]) if cells[3].isdigit() else None)
    return ports, "../shared/SPEC.md §1"


class Report:
    def __init__(self, quiet=False):
        self.failures = []
        self.quiet = quiet

    def fail(self, check, message):
        self.failures.append((check, message))
        if not self.quiet:
            print(f"FAIL {check}: {message}")

    def ok(self, check, message):
        if not self.quiet:
            print(f"ok   {check}: {message}")


# --- the checks --------------------------------------------------------------


def check_variables(files, report):
    used = set()
    for match in VAR.finditer(files.raw):
        name = match.group(1) or match.group(2)
        if name:
            used.add(name)
    missing = sorted(v for v in used if not files.env.get(v))
    for name in missing:
        report.fail("variables", f"${{{name}}} has no value in .env.example")
    unused = sorted(set(files.env) - used)
    for name in unused:
        report.fail("variables", f".env.example sets {name}, which docker-compose.yml never uses")
    if not missing and not unused:
        report.ok("variables", f"{len(used)} variables, each with a value in .env.example and each used")


def check_secrets(files, report):
    bad = 0
    for name, service in files.services.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and value and not re.fullmatch(r"\$\{[A-Z0-9_]+\}", value):
                bad += 1
                report.fail("secrets", f"{name}: {key} is written into the file; take it from .env")
            for match in re.finditer(r"://([^:/@\s]+):([^@\s]+)@", value):
                if not re.fullmatch(r"\$\{[A-Z0-9_]+\}", match.group(2)):
                    bad += 1
                    report.fail("secrets", f"{name}: {key} holds a password in its URL; take it from .env")
    ignored = subprocess.run(
        ["git", "-C", files.root, "check-ignore", "-q", "deploy/compose/.env"], capture_output=True
    )
    if ignored.returncode != 0:
        bad += 1
        report.fail("secrets", "deploy/compose/.env is not ignored by git (/.gitignore)")
    if not bad:
        report.ok("secrets", "every password, secret and key comes from .env, which git ignores")


def check_images(files, report):
    bad = 0
    shop = 0
    for name, service in files.services.items():
        image = service.get("image")
        if image is None:
            bad += 1
            report.fail("images", f"{name} names no image")
            continue
        if "EMPORIUM" in str(image) or service.get("build") or name in SPEC_PORTS:
            shop += 1
            if not is_emporium(service):
                bad += 1
                report.fail("images", f"{name} runs {image}, not the one image ${{EMPORIUM_IMAGE}}")
            build = service.get("build") or {}
            if build.get("dockerfile") != "deploy/docker/Dockerfile" or os.path.normpath(
                os.path.join(os.path.dirname(files.compose_path), build.get("context", ""))
            ) != os.path.normpath(files.root):
                bad += 1
                report.fail("images", f"{name} is not built from deploy/docker/Dockerfile in the repo")
        elif not PINNED.match(image) or image.endswith(":latest"):
            bad += 1
            report.fail("images", f"{name}: {image} is not pinned to a version")
    value = files.env.get("EMPORIUM_IMAGE", "")
    if not PINNED.match(value):
        bad += 1
        report.fail("images", f"EMPORIUM_IMAGE={value} in .env.example is not pinned to a version")
    if not bad:
        report.ok("images", f"{shop} services run ${{EMPORIUM_IMAGE}} ({value}); "
                  f"{len(files.services) - shop} others, each pinned")


def listening(files, spec):
    """Ports each service listens on, as its own settings and SPEC say."""
    ports = {}
    for name, service in files.services.items():
        if is_emporium(service):
            env = environment(service)
            own = set()
            for key in ("PORT", "GRPC_PORT"):
                if env.get(key, "").isdigit():
                    own.add(int(env[key]))
            for value in env.values():
                match = re.fullmatch(r"0\.0\.0\.0:(\d+)", value)
                if match:
                    own.add(int(match.group(1)))
            ports[name] = own
        else:
            ports[name] = THIRD_PARTY_PORTS.get(name, set())
    return ports


def references(text):
    """(host, port, whole match) of every http(s)/amqp/... address or host:port in text."""
    for match in re.finditer(r"(?:[a-z][a-z0-9+]*://(?:[^@/\s]*@)?)?([a-z][a-z0-9-]*):(\d{2,5})", text):
        yield match.group(1), int(match.group(2)), match.group(0)


def check_ports(files, report):
    spec, source = spec_ports()
    bad = 0
    if set(spec) != set(SPEC_PORTS):
        bad += 1
        report.fail("ports", f"SPEC §1 names {sorted(spec)}, the check knows {sorted(SPEC_PORTS)}")
    for name, (http, grpc) in spec.items():
        service = files.services.get(name)
        if service is None:
            bad += 1
            report.fail("ports", f"SPEC §1's {name} has no service in docker-compose.yml")
            continue
        env = environment(service)
        if env.get("PORT") != str(http):
            bad += 1
            report.fail("ports", f"{name}: PORT={env.get('PORT')}, SPEC §1 says {http}")
        if (env.get("GRPC_PORT") or None) != (str(grpc) if grpc else None):
            bad += 1
            report.fail("ports", f"{name}: GRPC_PORT={env.get('GRPC_PORT')}, SPEC §1 says {grpc}")
        if service.get("ports") and name != "gateway":
            bad += 1
            report.fail("ports", f"{name} publishes a host port: it could not be scaled, and only the gateway faces the public")
        if service.get("container_name"):
            bad += 1
            report.fail("ports", f"{name} has a container_name: it could not be scaled")
    gateway = environment(files.services.get("gateway", {}))
    if gateway.get("EMPORIUM__GATEWAY__INTERNAL_ADDR") != f"0.0.0.0:{GATEWAY_INTERNAL}":
        bad += 1
        report.fail("ports", f"the gateway's internal listener is not 0.0.0.0:{GATEWAY_INTERNAL}")
    published = [p for p in files.services.get("gateway", {}).get("ports", [])]
    if not any(str(p).endswith(f":{spec['gateway'][0]}") for p in published):
        bad += 1
        report.fail("ports", f"the gateway does not publish its port {spec['gateway'][0]}")
    ports = listening(files, spec)
    # Every address in the shop's environment: a service and a port it has;
    # peers at gRPC ports, upstreams and JWKS at HTTP ports.
    checked = 0
    for name, service in files.services.items():
        for key, value in environment(service).items():
            for host, port, whole in references(value):
                if host not in files.services:
                    bad += 1
                    report.fail("ports", f"{name}: {key} names {host}, which is no service")
                    continue
                checked += 1
                if port not in ports.get(host, set()):
                    bad += 1
                    report.fail("ports", f"{name}: {key} calls {host}:{port}, where {host} does not listen")
                    continue
                peer = key[: -len("_SERVICE_URL")].lower() if key.endswith("_SERVICE_URL") else None
                if peer:
                    peer = "catalog" if peer == "product" else peer
                    if peer != host or spec.get(host, (None, None))[1] != port:
                        bad += 1
                        report.fail("ports", f"{name}: {key}={value} is not {peer}'s gRPC port")
                if key.startswith("EMPORIUM__GATEWAY__UPSTREAMS__"):
                    target = key.rsplit("__", 1)[1].lower()
                    if target != host or spec.get(host, (None, None))[0] != port:
                        bad += 1
                        report.fail("ports", f"gateway: {key}={value} is not {target}'s HTTP port")
    upstreams = {k.rsplit("__", 1)[1].lower() for k in gateway if k.startswith("EMPORIUM__GATEWAY__UPSTREAMS__")}
    missing = sorted(set(spec) - {"gateway"} - upstreams)
    if missing:
        bad += 1
        report.fail("ports", f"the gateway has no upstream for {', '.join(missing)}")
    # The observability files, as mounted: every host they name is a
    # service of the stack, at a port it listens on.
    observed = 0
    for path in observability_files(files):
        with open(path) as f:
            text = f.read()
        if path.endswith("prometheus.yml"):
            config = yaml.safe_load(text)
            for job in config.get("scrape_configs", []):
                for sd in job.get("dns_sd_configs", []):
                    for host in sd.get("names", []):
                        observed += 1
                        port = sd.get("port")
                        if host not in files.services or port not in ports.get(host, set()):
                            bad += 1
                            report.fail("ports", f"prometheus.yml job {job['job_name']}: {host}:{port} is no service's port")
                        elif host in spec and port not in (spec[host][0], GATEWAY_INTERNAL if host == "gateway" else None):
                            bad += 1
                            report.fail("ports", f"prometheus.yml job {job['job_name']} scrapes {host}:{port}, not its HTTP port")
        for host, port, whole in references(text):
            if host in ("localhost", "shop", "http", "https") or whole.startswith(("0.0.0.0", "127.")):
                continue
            observed += 1
            if host not in files.services:
                bad += 1
                report.fail("ports", f"{os.path.relpath(path, files.root)} names {host}:{port}, which is no service of the stack")
            elif port not in ports.get(host, set()):
                bad += 1
                report.fail("ports", f"{os.path.relpath(path, files.root)} names {host}:{port}, where {host} does not listen")
    if not bad:
        report.ok("ports", f"SPEC §1's ports (read from {source}); {checked} addresses in the services' "
                  f"environment and {observed} in the mounted observability files name a service and its port")


def observability_files(files):
    """The files of deploy/observability that the stack mounts."""
    found = []
    for service in files.services.values():
        for volume in service.get("volumes", []) or []:
            source = str(volume).split(":", 1)[0]
            if "observability" not in source:
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(files.compose_path), source))
            if os.path.isdir(path):
                for root, _, names in os.walk(path):
                    found += [os.path.join(root, n) for n in names if n.endswith((".yml", ".yaml"))]
            elif path.endswith((".yml", ".yaml")):
                found.append(path)
    # Rule files hold no addresses; their annotations' links are not targets.
    return sorted(p for p in set(found) if "/rules/" not in p and os.path.exists(p))


def dockerfile_healthcheck(files):
    with open(files.dockerfile_path) as f:
        return any(line.startswith("HEALTHCHECK ") and "NONE" not in line for line in f)


def has_healthcheck(files, service):
    check = service.get("healthcheck")
    if isinstance(check, dict) and check.get("disable"):
        return False
    if isinstance(check, dict) and check.get("test"):
        return True
    return is_emporium(service) and dockerfile_healthcheck(files)


def check_depends(files, report):
    bad = 0
    edges = 0
    for name, service in files.services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        mine = set(service.get("profiles") or [])
        for target, how in depends.items():
            edges += 1
            condition = (how or {}).get("condition", "service_started")
            other = files.services.get(target)
            if other is None:
                bad += 1
                report.fail("depends", f"{name} depends on {target}, which is no service")
                continue
            theirs = set(other.get("profiles") or [])
            if theirs and not theirs & mine:
                bad += 1
                report.fail("depends", f"{name} depends on {target}, which runs only with profile {sorted(theirs)}")
            if condition == "service_healthy" and not has_healthcheck(files, other):
                bad += 1
                report.fail("depends", f"{name} waits for {target} to be healthy, and {target} has no health check")
            if condition == "service_completed_successfully" and str(other.get("restart", "no")) != "no":
                bad += 1
                report.fail("depends", f"{name} waits for {target} to complete, and {target} restarts ({other.get('restart')})")
    # No cycle: Compose would refuse to start.
    order, seen = [], {}

    def visit(node, path):
        if seen.get(node) == "done":
            return True
        if seen.get(node) == "open":
            report.fail("depends", "a cycle: " + " -> ".join(path + [node]))
            return False
        seen[node] = "open"
        ok = all(visit(t, path + [node]) for t in (files.services.get(node, {}).get("depends_on") or {}) if t in files.services)
        seen[node] = "done"
        order.append(node)
        return ok

    if not all(visit(n, []) for n in files.services):
        bad += 1
    if not bad:
        report.ok("depends", f"{edges} dependencies: each target exists, has a health check where one is "
                  "awaited, and one-shots are awaited to complete")


def check_mounts(files, report):
    bad = 0
    mounted = 0
    declared = set((files.compose.get("volumes") or {}).keys())
    compose_dir = os.path.dirname(files.compose_path)
    for name, service in files.services.items():
        for volume in service.get("volumes", []) or []:
            parts = str(volume).split(":")
            source = parts[0]
            if source.startswith((".", "/")):
                if source.startswith("/"):
                    if source not in HOST_PATHS:
                        bad += 1
                        report.fail("mounts", f"{name} mounts the host's {source}")
                    continue
                mounted += 1
                path = os.path.normpath(os.path.join(compose_dir, source))
                if not os.path.exists(path):
                    bad += 1
                    report.fail("mounts", f"{name} mounts {source}, which is not in the repo")
                elif not path.startswith(files.root + os.sep):
                    bad += 1
                    report.fail("mounts", f"{name} mounts {source}, outside the repo")
                if len(parts) < 3 or "ro" not in parts[2].split(","):
                    bad += 1
                    report.fail("mounts", f"{name} mounts {source} writable: the repo's files are read-only there")
            elif source not in declared:
                bad += 1
                report.fail("mounts", f"{name} uses the volume {source}, not declared under volumes:")
    if not bad:
        report.ok("mounts", f"{mounted} files and folders mounted from the repo, each there and read-only; "
                  f"{len(declared)} named volumes declared")


def check_limits(files, report):
    bad = 0
    for name, service in files.services.items():
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        if not limits.get("memory") or not limits.get("cpus"):
            bad += 1
            report.fail("limits", f"{name} has no CPU and memory limits (deploy.resources.limits)")
    if not bad:
        report.ok("limits", f"{len(files.services)} services, each with CPU and memory limits")


def dockerignore_context(files):
    from docker.utils.build import exclude_paths

    with open(files.dockerignore_path) as f:
        patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    return set(exclude_paths(files.root, patterns))


def check_dockerfile(files, report):
    bad = 0
    with open(files.dockerfile_path) as f:
        text = f.read()
    lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.startswith("#")]
    users = [l.split(None, 1)[1] for l in lines if l.startswith("USER ")]
    if not users or not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]):
        bad += 1
        report.fail("dockerfile", f"the image's last USER is {users[-1] if users else 'unset (root)'}, not a numeric non-root user")
    if not dockerfile_healthcheck(files):
        bad += 1
        report.fail("dockerfile", "no HEALTHCHECK")
    if 'ENTRYPOINT ["emporium"]' not in lines:
        bad += 1
        report.fail("dockerfile", 'the entrypoint is not ["emporium"]')
    with open(os.path.join(files.root, "rust-toolchain.toml")) as f:
        channel = re.search(r'channel\s*=\s*"([^"]+)"', f.read()).group(1)
    froms = [l.split()[1] for l in lines if l.startswith("FROM ")]
    rust = [f for f in froms if f.startswith("rust:")]
    if not rust or not rust[0].startswith(f"rust:{channel}-"):
        bad += 1
        report.fail("dockerfile", f"the builder is {rust[0] if rust else 'no rust image'}, rust-toolchain.toml says {channel}")
    for image in froms:
        if ":" not in image and image not in {"chef", "planner", "builder"}:
            bad += 1
            report.fail("dockerfile", f"FROM {image} has no tag")
    context = dockerignore_context(files)
    for line in lines:
        if line.startswith(("COPY ", "ADD ")) and "--from=" not in line:
            sources = line.split()[1:-1]
            for source in sources:
                if source == ".":
                    continue
                if source.rstrip("/") not in context:
                    bad += 1
                    report.fail("dockerfile", f"{line}: {source} is not in the build context (/.dockerignore)")
    for needed in ("Cargo.toml", "Cargo.lock", "crates/emporium/src/main.rs", "crates/proto/build.rs"):
        if needed not in context:
            bad += 1
            report.fail("dockerfile", f"the build context lacks {needed}")
    for path in context:
        top = path.split("/")[0]
        if top in (".git", "target", "data") or path.endswith(".env") or "/target/" in f"/{path}/":
            bad += 1
            report.fail("dockerfile", f"the build context holds {path}")
            break
    if not bad:
        report.ok("dockerfile", f"user {users[-1]}, HEALTHCHECK, entrypoint emporium, builder rust:{channel}; "
                  f"a build context of {len(context)} paths holding every COPY source and no .git, target or .env")


def check_settings(files, report, binary):
    """`emporium config` with each service's environment: a variable that
    names no setting, or a value a setting refuses, stops it."""
    bad = 0
    shop = [(n, s) for n, s in files.resolved["services"].items() if is_emporium(files.services[n])]
    for name, service in shop:
        command = service.get("command") or ["up"]
        env = {"PATH": os.environ.get("PATH", "")}
        env.update(environment(service))
        with open(files.dockerfile_path) as f:
            for key, value in re.findall(r"^\s*(?:ENV\s+)?([A-Z_]+)=(\S+)", f.read().split("FROM debian", 1)[1], re.M):
                env.setdefault(key, value)
        lone = command[1:] if command[0] in ("serve", "migrate", "seed") else []
        args = [binary, "config"] + (lone if len(lone) == 1 else [])
        with tempfile.TemporaryDirectory() as cwd:
            env["EMPORIUM__DATA_DIR"] = cwd
            done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            bad += 1
            report.fail("settings", f"{name}: emporium {' '.join(args[1:])} refuses its environment: {done.stderr.strip()}")
    if not bad:
        report.ok("settings", f"emporium config accepts the environment of each of {len(shop)} services")


CHECKS = [check_variables, check_secrets, check_images, check_ports, check_depends, check_mounts, check_limits, check_dockerfile]


def run_files(args):
    files = Files(REPO)
    report = Report()
    for check in CHECKS:
        check(files, report)
    if args.binary:
        if os.access(args.binary, os.X_OK):
            check_settings(files, report, args.binary)
        else:
            print(f"skipped settings: no emporium binary at {args.binary}")
    compose_env_matches(files, report, args.docker_compose)
    if report.failures:
        print(f"{len(report.failures)} failure(s)")
        sys.exit(1)


def compose_env_matches(files, report, docker_compose):
    """run-on-loopback reads the file with `interpolate`: it must give each
    service exactly what docker-compose gives it."""
    if not docker_compose:
        return
    out = subprocess.run(
        [docker_compose, "-f", files.compose_path, "--env-file", files.env_path,
         "--profile", "demo", "--profile", "sample-data", "config"],
        capture_output=True, text=True, check=True,
    ).stdout
    theirs = yaml.safe_load(out)["services"]
    bad = 0
    for name, service in files.resolved["services"].items():
        if environment(service) != environment(theirs.get(name, {})):
            bad += 1
            report.fail("environment", f"{name}: the loopback run would read another environment than docker-compose")
        if service.get("command") != theirs.get(name, {}).get("command"):
            bad += 1
            report.fail("environment", f"{name}: the loopback run would read another command than docker-compose")
    if not bad:
        report.ok("environment", f"run-on-loopback reads the same environment and command as docker-compose for {len(theirs)} services")


# --- self-test: each check fails on files broken on purpose -----------------


def mutations():
    """(what is broken, which check must fail, how) over the copied tree."""

    def compose(change):
        def apply(root):
            path = os.path.join(root, "deploy/compose/docker-compose.yml")
            with open(path) as f:
                text = f.read()
            new = change(text)
            assert new != text, "mutation changed nothing"
            with open(path, "w") as f:
                f.write(new)
        return apply

    def env(change):
        def apply(root):
            path = os.path.join(root, "deploy/compose/.env.example")
            with open(path) as f:
                text = f.read()
            new = change(text)
            assert new != text
            with open(path, "w") as f:
                f.write(new)
        return apply

    def dockerfile(change):
        def apply(root):
            path = os.path.join(root, "deploy/docker/Dockerfile")
            with open(path) as f:
                text = f.read()
            new = change(text)
            assert new != text
            with open(path, "w") as f:
                f.write(new)
        return apply

    def sub(old, new, count=1):
        return lambda text: text.replace(old, new, count)

    return [
        ("a variable without a value", "variables", env(lambda t: re.sub(r"^REDIS_PASSWORD=.*$", "REDIS_PASSWORD=", t, flags=re.M))),
        ("a variable nobody uses", "variables", env(lambda t: t + "UNUSED_SETTING=1\n")),
        ("a password written into the file", "secrets", compose(sub("MINIO_ROOT_PASSWORD: ${MINIO_ROOT_PASSWORD}", "MINIO_ROOT_PASSWORD: hunter2hunter2"))),
        ("a password inside a URL", "secrets", compose(sub("postgres://basket:${PG_BASKET_PASSWORD}@", "postgres://basket:hunter2@"))),
        ("a service on another image", "images", compose(lambda t: re.sub(r'(  ordering:\n    <<: \*emporium\n)', r'\1    image: emporium:latest\n', t))),
        ("an unpinned third-party image", "images", compose(sub("image: redis:7.4.2-bookworm", "image: redis:latest"))),
        ("a port that is not SPEC's", "ports", compose(sub('PORT: "8001"', 'PORT: "8009"'))),
        ("a peer at its HTTP port", "ports", compose(sub("PAYMENT_SERVICE_URL: http://payment:50052", "PAYMENT_SERVICE_URL: http://payment:8003"))),
        ("an upstream at a host that is no service", "ports", compose(sub("UPSTREAMS__BASKET: http://basket:8007", "UPSTREAMS__BASKET: http://baskets:8007"))),
        ("a service left out of the gateway", "ports", compose(lambda t: re.sub(r"\n\s+EMPORIUM__GATEWAY__UPSTREAMS__RECOMMENDATION: [^\n]+", "", t))),
        ("a dependency that is no service", "depends", compose(sub("      basket: {condition: service_healthy}\n\n  recommendation:", "      baskets: {condition: service_healthy}\n\n  recommendation:"))),
        ("waiting for the health of a service without a health check", "depends", compose(sub("loki: {condition: service_started}", "loki: {condition: service_healthy}"))),
        ("waiting for a long-running service to complete", "depends", compose(sub("migrate: {condition: service_completed_successfully}", "redis: {condition: service_completed_successfully}"))),
        ("a mounted file that is not in the repo", "mounts", compose(sub("../observability/loki/loki.yml:", "../observability/loki/loki-missing.yml:"))),
        ("a repo file mounted writable", "mounts", compose(sub("./rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins:ro", "./rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins"))),
        ("a service without limits", "limits", compose(lambda t: re.sub(r"(  alert-webhook:\n(?:    .*\n)*?)    deploy:\n      resources:\n        limits: \{[^}]*\}\n", r"\1", t))),
        ("an image that runs as root", "dockerfile", dockerfile(sub("USER 10001:10001", "USER root"))),
        ("an image without a health check", "dockerfile", dockerfile(lambda t: re.sub(r"^HEALTHCHECK .*$", "", t, flags=re.M))),
        ("a builder of another toolchain", "dockerfile", dockerfile(sub("FROM rust:1.95.0-bookworm", "FROM rust:1.94.0-bookworm"))),
        ("a COPY of a file the context leaves out", "dockerfile", dockerfile(sub("COPY deploy/docker/emporium-health", "COPY deploy/docker/missing-health"))),
    ]


def compose(root, change):
    path = os.path.join(root, "deploy/compose/docker-compose.yml")
    with open(path) as f:
        text = f.read()
    new = change(text)
    assert new != text, "mutation changed nothing"
    with open(path, "w") as f:
        f.write(new)


def sub(old, new, count=1):
    return lambda text: text.replace(old, new, count)


def copy_tree(root):
    """The files the checks read, in a scratch git repository."""
    scratch = tempfile.mkdtemp(prefix="compose-self-test-")
    for path in (".gitignore", ".dockerignore", "Cargo.toml", "Cargo.lock", "rust-toolchain.toml"):
        shutil.copy(os.path.join(root, path), os.path.join(scratch, path))
    for folder in ("deploy", "crates", "bench"):
        shutil.copytree(os.path.join(root, folder), os.path.join(scratch, folder),
                        ignore=shutil.ignore_patterns("target", ".env"))
    subprocess.run(["git", "init", "-q", scratch], check=True)
    return scratch


def run_self_test(args):
    failed = 0
    scratch = copy_tree(REPO)
    try:
        # The intact copy passes every check: the failures below are the
        # mutations'.
        report = Report(quiet=True)
        files = Files(scratch)
        for check in CHECKS:
            check(files, report)
        if report.failures:
            print(f"FAIL self-test: the intact copy fails: {report.failures}")
            sys.exit(1)
        for what, check_name, apply in mutations():
            broken = copy_tree(REPO)
            try:
                apply(broken)
                report = Report(quiet=True)
                files = Files(broken)
                for check in CHECKS:
                    check(files, report)
                caught = [m for c, m in report.failures if c == check_name]
                if caught:
                    print(f"ok   {check_name} fails on {what}: {caught[0]}")
                else:
                    failed += 1
                    print(f"FAIL {check_name} passes {what}")
            finally:
                shutil.rmtree(broken)
        # The tools: docker-compose refuses what 1.29 refuses, hadolint a root image.
        tools = [
            ("docker-compose config", "a top-level name:", [args.docker_compose, "-f", "docker-compose.yml", "--env-file", ".env.example", "config", "-q"],
             lambda t: "name: emporium\n" + t, "deploy/compose/docker-compose.yml"),
            ("docker-compose config", "a dependency on an unknown service", [args.docker_compose, "-f", "docker-compose.yml", "--env-file", ".env.example", "config", "-q"],
             lambda t: t.replace("      basket: {condition: service_healthy}\n\n  recommendation:", "      baskets: {condition: service_healthy}\n\n  recommendation:", 1), "deploy/compose/docker-compose.yml"),
            ("hadolint", "an apt-get install without pinned versions", [args.hadolint, "../docker/Dockerfile"],
             lambda t: t.replace("FROM debian:bookworm-slim AS runtime\n", "FROM debian:bookworm-slim AS runtime\nRUN apt-get update && apt-get install -y curl\n"), "deploy/docker/Dockerfile"),
        ]
        if args.binary and os.access(args.binary, os.X_OK):
            broken = copy_tree(REPO)
            try:
                compose(broken, sub('      PORT: "8001"\n', '      PORT: "8001"\n      EMPORIUM__ORDERING__NO_SUCH_SETTING: "1"\n'))
                report = Report(quiet=True)
                check_settings(Files(broken), report, args.binary)
                if report.failures:
                    print(f"ok   settings fails on a variable that names no setting: {report.failures[0][1][:160]}")
                else:
                    failed += 1
                    print("FAIL settings passes a variable that names no setting")
            finally:
                shutil.rmtree(broken)
        else:
            print("skipped settings on a variable that names no setting: no emporium binary given")
        for tool, what, command, change, path in tools:
            if not command[0]:
                print(f"skipped {tool} on {what}: the tool was not given")
                continue
            broken = copy_tree(REPO)
            try:
                full = os.path.join(broken, path)
                with open(full) as f:
                    text = f.read()
                with open(full, "w") as f:
                    f.write(change(text))
                done = subprocess.run(command, cwd=os.path.join(broken, "deploy/compose"), capture_output=True, text=True)
                if done.returncode != 0:
                    line = (done.stderr or done.stdout).strip().splitlines()
                    print(f"ok   {tool} fails on {what}: {line[-1] if line else ''}")
                else:
                    failed += 1
                    print(f"FAIL {tool} passes {what}")
            finally:
                shutil.rmtree(broken)
    finally:
        shutil.rmtree(scratch)
    if failed:
        print(f"{failed} check(s) passed a broken file")
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["files", "self-test"])
    parser.add_argument("--docker-compose", default="")
    parser.add_argument("--hadolint", default="")
    parser.add_argument("--binary", default="")
    args = parser.parse_args()
    if args.binary and not os.access(args.binary, os.X_OK):
        args.binary = ""
    if args.mode == "files":
        run_files(args)
    else:
        run_self_test(args)


if __name__ == "__main__":
    main()
