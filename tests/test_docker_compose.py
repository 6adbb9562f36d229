"""Keeps the production-like docker path (Dockerfile, docker-compose.yml, deploy/) valid.

Nothing here runs Docker: the files are parsed and checked against each other and against the
code (topic names, settings, metric names), so a rename on either side fails here first.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import metric_names
from pipeline.app import topic_specs
from pipeline.settings import Settings
from schemas.topics import TopicNames
from tests.helpers.metrics import exercised_metrics, exported

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SETTINGS_FILE = ROOT / "pipeline" / "settings.py"
CONTRACT_FILE = Path(__file__).parents[1].parent / "shared" / "CONTRACT.md"

KAFKA_SERVICE = "kafka"
KAFKA_INIT_SERVICE = "kafka-init"
PROMETHEUS_SERVICE = "prometheus"
GRAFANA_SERVICE = "grafana"
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# What a worker's registry really exports: name -> (type, label names). Built from the code, so
# renaming a metric or a label there fails the dashboard check here.
EXPORTED = exported(exercised_metrics())


def _load_compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as handle:
        loaded = yaml.safe_load(handle)
    assert isinstance(loaded, dict), "docker-compose.yml must be a mapping"
    return loaded


COMPOSE = _load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE.get("services") or {}
WORKERS = sorted(name for name, service in SERVICES.items() if "build" in service)


# --- helpers ------------------------------------------------------------------------------------


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _port_range(text: str) -> list[int]:
    first, _, last = str(text).partition("-")
    return list(range(int(first), int(last or first) + 1))


def _ports(service: dict[str, Any]) -> list[tuple[list[int], list[int], str]]:
    """(host ports, container ports, protocol) of each published port; host ports may be []."""
    parsed = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            host = _port_range(published) if published not in (None, "") else []
            parsed.append((host, _port_range(entry["target"]), entry.get("protocol", "tcp")))
            continue
        spec, _, protocol = str(entry).partition("/")
        parts = spec.rsplit(":", 2)
        container = _port_range(parts[-1])
        host = _port_range(parts[-2]) if len(parts) >= 2 and parts[-2] else []
        parsed.append((host, container, protocol or "tcp"))
    return parsed


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) of each volume entry: type is "bind", "volume" or "tmpfs"."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts.append((entry.get("type", "volume"), entry.get("source", ""), entry["target"]))
            continue
        parts = str(entry).split(":")
        if len(parts) == 1:
            mounts.append(("volume", "", parts[0]))  # anonymous volume
            continue
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        mounts.append((kind, source, target))
    return mounts


def _bind_source(service_name: str, target: str) -> Path:
    for kind, source, mount_target in _mounts(SERVICES[service_name]):
        if kind == "bind" and mount_target.rstrip("/") == target.rstrip("/"):
            return (ROOT / source).resolve()
    raise AssertionError(f"{service_name} mounts nothing from the repo at {target}")


def _command_text(service: dict[str, Any]) -> str:
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        if isinstance(value, list):
            parts.extend(str(item) for item in value)
        elif value is not None:
            parts.append(str(value))
    return "\n".join(parts)


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _documented_variables() -> tuple[set[str], set[str]]:
    """CLARION_* names (and CLARION_..._* prefixes) from settings.py and the contract's table."""
    names: set[str] = set()
    prefixes: set[str] = set()
    for found in re.findall(r"[\"'](CLARION_[A-Z0-9_]*)[\"']", SETTINGS_FILE.read_text("utf-8")):
        (prefixes if found.endswith("_") else names).add(found)

    if not CONTRACT_FILE.is_file():
        pytest.skip(f"{CONTRACT_FILE} is absent: cannot check against the contract")
    contract = CONTRACT_FILE.read_text(encoding="utf-8")
    section = contract.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for row in section.splitlines():
        if not row.startswith("|"):
            continue
        first_cell = row.strip("|").split("|", 1)[0]
        stem = ""
        for token in re.findall(r"`([^`]+)`", first_cell):
            if token.startswith("CLARION_"):
                if token.endswith("*"):
                    prefixes.add(token.rstrip("*"))
                    continue
                names.add(token)
                stem = token.rsplit("_", 1)[0]
            elif token.startswith("_") and stem:
                # `CLARION_SMTP_HOST`, `_PORT` is shorthand for CLARION_SMTP_PORT.
                names.add(stem + token)
    return names, prefixes


def _kafka_listeners() -> dict[str, tuple[str, int]]:
    advertised = _environment(SERVICES[KAFKA_SERVICE])["KAFKA_ADVERTISED_LISTENERS"]
    listeners = {}
    for item in advertised.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        listeners[name] = (host, int(port))
    return listeners


def _internal_listener() -> str:
    env = _environment(SERVICES[KAFKA_SERVICE])
    name = env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
    host, port = _kafka_listeners()[name]
    assert host in {KAFKA_SERVICE, SERVICES[KAFKA_SERVICE].get("hostname")}, (
        f"the {name} listener must be advertised under the service name, got {host!r}"
    )
    return f"{host}:{port}"


def _worker_container_port(worker: str) -> int:
    env = _environment(SERVICES[worker])
    web_port = int(env.get("CLARION_WEB_PORT", "6066"))
    container_ports = {port for _, container, _ in _ports(SERVICES[worker]) for port in container}
    assert web_port in container_ports, f"{worker} does not publish CLARION_WEB_PORT {web_port}"
    return web_port


def _option(line: str, option: str) -> str | None:
    match = re.search(rf"{option}[ =](\S+)", line)
    return match.group(1) if match else None


def _base_name(metric: str) -> str:
    """A histogram's series (``_bucket``, ``_sum``, ``_count``) count as its base name."""
    if metric in EXPORTED:
        return metric
    for suffix in HISTOGRAM_SUFFIXES:
        base = metric.removesuffix(suffix)
        if metric.endswith(suffix) and EXPORTED.get(base, ("", frozenset()))[0] == "histogram":
            return base
    return metric


def _labels_in(expr: str) -> set[str]:
    """Label names an expression groups by or selects on."""
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels.update(name.strip() for name in group.split(",") if name.strip())
    for selector in re.findall(r"clarion_[a-z_]+\{([^}]*)\}", expr):
        labels.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
    return labels


def _walk_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(_walk_panels(panel.get("panels") or []))
    return found


# --- the compose file ---------------------------------------------------------------------------


def test_compose_file_uses_the_compose_spec() -> None:
    assert "version" not in COMPOSE, "the compose spec has no top-level version key"
    assert SERVICES, "no services"
    assert WORKERS, "no service is built from this repo"
    for required in (KAFKA_SERVICE, KAFKA_INIT_SERVICE, PROMETHEUS_SERVICE, GRAFANA_SERVICE):
        assert required in SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_pinned_image_or_buildable_dockerfile(name: str) -> None:
    service = SERVICES[name]
    if "build" in service:
        build = service["build"]
        if isinstance(build, str):
            context, dockerfile = build, "Dockerfile"
        else:
            context, dockerfile = build.get("context", "."), build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).is_file(), f"{name}: {context}/{dockerfile} missing"
    if "image" in service:
        image = str(service["image"])
        reference, _, digest = image.partition("@")
        last_segment = reference.rsplit("/", 1)[-1]
        tag = last_segment.partition(":")[2]
        assert digest or tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"
    assert "image" in service or "build" in service, f"{name} has neither image nor build"


def test_depends_on_targets_are_services() -> None:
    for name, service in SERVICES.items():
        for target, condition in _depends_on(service).items():
            assert target in SERVICES, f"{name} depends on unknown service {target!r}"
            assert target != name
            assert condition in DEPENDS_ON_CONDITIONS, f"{name}: bad condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], (
                    f"{name} waits for {target} to be healthy but it has no healthcheck"
                )


def test_host_ports_are_unique() -> None:
    seen: dict[tuple[int, str], str] = {}
    for name, service in SERVICES.items():
        for host_ports, _, protocol in _ports(service):
            for port in host_ports:
                key = (port, protocol)
                assert key not in seen, f"host port {port}/{protocol}: {seen[key]} and {name}"
                seen[key] = name


def test_mounts_exist() -> None:
    declared_volumes = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for kind, source, target in _mounts(service):
            if kind == "bind" and source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source} at {target}"
            elif kind == "volume" and source:
                assert source in declared_volumes, f"{name}: volume {source!r} not declared"


def test_workers_use_the_brokers_internal_listener() -> None:
    internal = _internal_listener()
    for worker in WORKERS:
        broker = _environment(SERVICES[worker]).get("CLARION_BROKER")
        assert broker, f"{worker} does not set CLARION_BROKER"
        servers = [server.strip().removeprefix("kafka://") for server in broker.split(",")]
        assert servers == [internal], f"{worker}: CLARION_BROKER={broker!r}, want {internal}"
    assert f"--bootstrap-server {internal}" in _command_text(SERVICES[KAFKA_INIT_SERVICE])


def test_each_worker_advertises_its_own_web_address() -> None:
    # Views forward to the key's owner at its advertised URL: it must be that worker's.
    for worker in WORKERS:
        env = _environment(SERVICES[worker])
        advertised = env.get("CLARION_ADVERTISED_URL", "")
        hostname = SERVICES[worker].get("hostname", worker)
        assert advertised == f"http://{hostname}:{env['CLARION_WEB_PORT']}", (
            f"{worker}: CLARION_ADVERTISED_URL={advertised!r}"
        )


def test_kafka_listens_where_it_advertises() -> None:
    env = _environment(SERVICES[KAFKA_SERVICE])
    bound = {}
    for item in env["KAFKA_LISTENERS"].split(","):
        listener, _, address = item.strip().partition("://")
        bound[listener] = int(address.rpartition(":")[2])
    for listener, (host, port) in _kafka_listeners().items():
        assert bound.get(listener) == port, f"{listener} advertised on {port}, bound on {bound}"
        if host in {"localhost", "127.0.0.1"}:
            published = {
                p for host_ports, _, _ in _ports(SERVICES[KAFKA_SERVICE]) for p in host_ports
            }
            assert port in published, f"{listener} is advertised to the host but not published"
    protocols = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    for listener in bound:
        assert f"{listener}:" in protocols


def test_worker_environment_is_documented() -> None:
    names, prefixes = _documented_variables()
    for worker in WORKERS:
        for variable in _environment(SERVICES[worker]):
            if not variable.startswith("CLARION_"):
                continue
            assert variable in names or variable.startswith(tuple(prefixes)), (
                f"{worker} sets {variable}, which neither CONTRACT.md nor settings.py knows"
            )


def test_kafka_init_creates_every_topic() -> None:
    script = _command_text(SERVICES[KAFKA_INIT_SERVICE])
    lines = {}
    for line in script.splitlines():
        match = re.search(r"--topic[ =](\S+)", line)
        if match:
            lines[match.group(1).strip("\"'")] = line
    names = TopicNames()
    missing = {*names.user_keyed(), *names.other()} - set(lines)
    assert not missing, f"kafka-init does not create {sorted(missing)}"
    for topic, line in lines.items():
        assert "--create" in line
        assert "--if-not-exists" in line, f"{topic}: kafka-init must be rerunnable"
    partitions = {_option(lines[topic], "--partitions") for topic in names.user_keyed()}
    assert len(partitions) == 1, f"user-keyed topics differ in partitions: {partitions}"
    assert None not in partitions, "every user-keyed topic needs an explicit --partitions"
    for spec in topic_specs(Settings()):
        for name, value in spec.config.items():
            assert f"--config {name}={value}" in lines[spec.name], f"{spec.name} needs {name}"
    worker_partitions = {_environment(SERVICES[w]).get("CLARION_PARTITIONS") for w in WORKERS}
    assert len(worker_partitions) == 1
    (worker_value,) = worker_partitions
    assert worker_value, "workers must set CLARION_PARTITIONS"
    assert worker_value in script, "kafka-init and the workers must share CLARION_PARTITIONS"


# --- prometheus and grafana ---------------------------------------------------------------------


def test_prometheus_scrapes_every_worker() -> None:
    config_file = _bind_source(PROMETHEUS_SERVICE, "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    targets = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs") or []:
            targets.update(static["targets"])
    expected = {f"{worker}:{_worker_container_port(worker)}" for worker in WORKERS}
    assert targets == expected


def test_grafana_provisioning_matches_the_mounts() -> None:
    provisioning = _bind_source(GRAFANA_SERVICE, "/etc/grafana/provisioning")
    datasources = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    prometheus_port = _ports(SERVICES[PROMETHEUS_SERVICE])[0][1][0]
    assert [ds["url"] for ds in datasources] == [f"http://{PROMETHEUS_SERVICE}:{prometheus_port}"]
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "clarion.yml").read_text(encoding="utf-8")
    )["providers"]
    for provider in providers:
        path = provider["options"]["path"]
        assert _bind_source(GRAFANA_SERVICE, path).is_dir()


def test_grafana_dashboard_uses_exported_metrics() -> None:
    dashboards = _bind_source(GRAFANA_SERVICE, "/var/lib/grafana/dashboards")
    dashboard = json.loads((dashboards / "clarion.json").read_text(encoding="utf-8"))
    assert dashboard["uid"] == "clarion"
    assert dashboard["title"] == "Clarion"
    assert dashboard["schemaVersion"] >= 39

    provisioning = _bind_source(GRAFANA_SERVICE, "/etc/grafana/provisioning")
    datasource_uids = {
        ds["uid"]
        for ds in yaml.safe_load(
            (provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
        )["datasources"]
    }
    panels = _walk_panels(dashboard["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"

    used: set[str] = set()
    quantiles: set[str] = set()
    for panel in panels:
        for target in panel.get("targets") or []:
            expr = target.get("expr", "")
            datasource = target.get("datasource") or panel.get("datasource") or {}
            assert datasource.get("uid") in datasource_uids, f"{panel['title']}: unknown datasource"
            series = re.findall(r"clarion_[a-z_]+", expr)
            names = {_base_name(name) for name in series}
            unknown = names - set(EXPORTED)
            assert not unknown, f"{panel['title']}: {sorted(unknown)} not exported by the app"
            known_labels = set().union(*(EXPORTED[name][1] for name in names))
            if any(name.endswith("_bucket") for name in series):
                known_labels.add("le")
            stray = _labels_in(expr) - known_labels
            assert not stray, f"{panel['title']}: labels {sorted(stray)} not on {sorted(names)}"
            if "histogram_quantile" in expr:
                assert "_bucket" in expr, f"{panel['title']}: quantiles need the _bucket series"
                assert "le" in _labels_in(expr), f"{panel['title']}: quantiles need by (le)"
                quantiles.update(names)
            used |= names
    assert used, "the dashboard queries no clarion metric"
    # The panels: throughput, latency percentiles, lag, DLQ, suppression reasons.
    wanted = {
        metric_names.EVENTS_RECEIVED,
        metric_names.ROUTED,
        metric_names.DELIVERY_LATENCY,
        metric_names.CONSUMER_LAG,
        metric_names.DLQ_RECORDS,
        metric_names.SUPPRESSED,
    }
    assert wanted <= used, f"the dashboard lacks {sorted(wanted - used)}"
    assert metric_names.DELIVERY_LATENCY in quantiles, "no latency percentiles"


# --- the image ----------------------------------------------------------------------------------


def test_dockerfile_builds_a_runnable_worker_image() -> None:
    instructions = _dockerfile_instructions(DOCKERFILE)
    final = _final_stage(instructions)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}

    (entrypoint,) = [json.loads(args) for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entrypoint[0] in pyproject["project"]["scripts"]
    (cmd,) = [json.loads(args) for keyword, args in final if keyword == "CMD"]
    assert cmd == ["worker"]

    exposed = {
        int(port.split("/")[0]) for k, args in final if k == "EXPOSE" for port in args.split()
    }
    for worker in WORKERS:
        assert _worker_container_port(worker) in exposed

    (healthcheck,) = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert "/health" in healthcheck
    assert "curl" not in healthcheck
    assert "wget" not in healthcheck

    # Everything `pip install .` needs must be copied into the build context of the image.
    copied = set()
    for keyword, args in instructions:
        if keyword == "COPY" and "--from" not in args:
            sources = [word for word in args.split()[:-1] if not word.startswith("--")]
            copied.update(source.removeprefix("./").rstrip("/") or "." for source in sources)
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    needed |= {
        pattern.rstrip("*.")
        for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert "." in copied or needed <= copied, f"the Dockerfile does not copy {needed - copied}"
