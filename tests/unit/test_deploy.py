"""The Docker deployment keeps the contract its users rely on (DESIGN.md §1 and §7).

docker-compose.yml, the Dockerfile, the Prometheus config and alert rules and the Grafana
dashboards are checked as parsed files: every service is reachable, healthy-checked and started
after what it needs; topics match shared.topics; Prometheus scrapes every service; alerts and
dashboards name only metrics (and labels) the services really expose. No Docker needed.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from shared.metrics import PREFIX
from shared.topics import ALL_TOPICS

REPO: Final = Path(__file__).resolve().parents[2]
DEPLOY: Final = REPO / "deploy"

# The metrics the services expose and their labels. Dashboards and alerts may use only these; a
# metric or label renamed in the code fails test_code_defines_the_metrics_of_the_contract until
# this table and deploy/ follow.
COUNTERS: Final = {
    "userops_http_requests_total": ("route", "method", "status"),
    "userops_ingest_events_accepted_total": ("type",),
    "userops_ingest_events_rejected_total": ("reason",),
    "userops_consumer_messages_processed_total": ("consumer", "topic"),
    "userops_consumer_messages_deadlettered_total": ("consumer", "topic", "reason"),
    "userops_consumer_retries_total": ("consumer",),
    "userops_timers_fired_total": ("service", "kind"),
    "userops_segmenter_transitions_total": ("from_stage", "to_stage"),
}
GAUGES: Final = {
    "userops_consumer_lag": ("consumer", "topic", "partition"),
    "userops_consumer_ready": ("consumer",),
    "userops_outbox_backlog": ("service",),
    "userops_timer_backlog": ("service",),
    "userops_segmenter_users": ("stage",),
    "userops_segmenter_segment_members": ("segment",),
}
HISTOGRAMS: Final = {
    "userops_http_request_duration_seconds": ("route", "method"),
    "userops_ingest_produce_duration_seconds": (),
    "userops_ingest_batch_size": (),
    "userops_consumer_processing_seconds": ("consumer",),
    "userops_consumer_end_to_end_seconds": ("consumer",),
}
TARGET_LABELS: Final = frozenset({"job", "instance"})  # added by Prometheus to every series


def exposed_series() -> dict[str, frozenset[str]]:
    """Every series name a query may use, with the labels it carries."""
    out = {name: frozenset(labels) for name, labels in {**COUNTERS, **GAUGES}.items()}
    for name, labels in HISTOGRAMS.items():
        out[f"{name}_bucket"] = frozenset({*labels, "le"})
        out[f"{name}_sum"] = out[f"{name}_count"] = frozenset(labels)
    return out


EXPOSED: Final = exposed_series()
REQUIRED_ALERTS: Final = {
    "UseropsServiceDown", "UseropsIngestErrorRatioHigh", "UseropsIngestKafkaUnavailable",
    "UseropsIngestLatencyHigh", "UseropsConsumerLagHigh", "UseropsDeadLetters",
    "UseropsConsumerNotReady", "UseropsOutboxBacklogGrowing", "UseropsTimerBacklogGrowing",
    "UseropsEndToEndLatencyHigh",
}  # fmt: skip


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def interpolate(value: Any) -> str:
    """A compose value as `docker compose` sees it with an empty environment (the defaults)."""
    text = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", str(value))
    return text.replace("$$", "$")


COMPOSE: Final = load_yaml(REPO / "docker-compose.yml")["services"]
APPS: Final = {name: svc for name, svc in COMPOSE.items() if svc.get("command", [])[:2] == ["python", "-m"]}
PROMETHEUS: Final = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
RULES: Final = [r for g in load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"] for r in g["rules"]]
DASHBOARDS: Final = {
    p.name: json.loads(p.read_text()) for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")
}
DATASOURCES: Final = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")


def env(svc: dict[str, Any]) -> dict[str, str]:
    return {k: interpolate(v) for k, v in (svc.get("environment") or {}).items()}


def published(svc: dict[str, Any]) -> dict[int, str]:
    """container port -> "host_ip:host_port" of a service's published ports."""
    out = {}
    for spec in svc.get("ports", []):
        host_ip, host_port, container = str(spec).split(":")
        out[int(container)] = f"{host_ip}:{host_port}"
    return out


def test_the_stack_is_there() -> None:
    assert {"kafka", "kafka-topics", "prometheus", "grafana"} <= COMPOSE.keys()
    assert {"ingest", "segmenter", "rewards", "notifier"} == APPS.keys()


@pytest.mark.parametrize("name", sorted(APPS))
def test_each_service_runs_the_one_image_reachable_and_health_checked(name: str) -> None:
    svc, values = APPS[name], env(APPS[name])
    assert (svc["build"], svc["image"]) == (".", "userops:local")
    assert svc["command"] == ["python", "-m", f"services.{name}"]
    port = int(values[f"USEROPS_{name.upper()}_PORT"])
    assert values[f"USEROPS_{name.upper()}_HOST"] == "0.0.0.0"
    assert published(svc) == {port: f"127.0.0.1:{port}"}
    probe = " ".join(svc["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/health" in probe
    assert values["USEROPS_KAFKA_BOOTSTRAP"] == "kafka:19092"
    assert values["USEROPS_CONFIG_DIR"] == "/app/config"
    assert "./config:/app/config:ro" in svc["volumes"]
    assert str(svc["environment"]["USEROPS_ADMIN_TOKEN"]).startswith("${USEROPS_ADMIN_TOKEN:-")
    # Write keys reach ingest only, from the environment (config/ingest.yaml names the variable).
    assert ("USEROPS_DEV_WRITE_KEY" in svc["environment"]) == (name == "ingest")
    assert svc["depends_on"]["kafka"] == {"condition": "service_healthy"}
    assert svc["depends_on"]["kafka-topics"] == {"condition": "service_completed_successfully"}


@pytest.mark.parametrize("name", ["segmenter", "rewards", "notifier"])
def test_each_data_owner_has_its_own_postgres(name: str) -> None:
    svc, values = APPS[name], env(APPS[name])
    db = COMPOSE[values["USEROPS_PG_HOST"]]
    db_env = env(db)
    assert db["image"] == "postgres:17"
    assert db_env["POSTGRES_DB"] == name
    assert db_env["POSTGRES_USER"] == values["USEROPS_PG_USER"]
    assert db_env["POSTGRES_PASSWORD"] == values["USEROPS_PG_PASSWORD"]
    assert str(svc["environment"]["USEROPS_PG_PASSWORD"]).startswith("${USEROPS_PG_PASSWORD:-")
    assert values["USEROPS_PG_PORT"] == "5432"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert db["volumes"] == [f"{name}-pg:/var/lib/postgresql/data"]
    assert svc["depends_on"][values["USEROPS_PG_HOST"]] == {"condition": "service_healthy"}
    assert db.get("profiles") == svc.get("profiles")


def test_ingest_gets_the_write_key_its_config_names_from_the_environment() -> None:
    sources = load_yaml(REPO / "config" / "ingest.yaml")["sources"]
    for source in sources:
        variable = source["write_key_env"]
        assert str(APPS["ingest"]["environment"][variable]).startswith(f"${{{variable}:-")


def test_no_two_services_share_a_database_server() -> None:
    hosts = [env(svc).get("USEROPS_PG_HOST") for svc in APPS.values()]
    owned = [h for h in hosts if h]
    assert len(owned) == len(set(owned)) == 3


def test_default_profile_starts_only_what_exists_and_waits_only_for_what_it_starts() -> None:
    for name, svc in COMPOSE.items():
        if name in APPS and not svc.get("profiles"):
            assert (REPO / "services" / name / "__main__.py").exists(), f"{name} is not written yet"
        for dep in svc.get("depends_on", {}):
            assert set(COMPOSE[dep].get("profiles", [])) <= set(svc.get("profiles", [])), (name, dep)


def test_kafka_is_one_kraft_node_with_a_listener_for_services_and_one_for_the_host() -> None:
    kafka = COMPOSE["kafka"]
    values = env(kafka)
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert values["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert values["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "INTERNAL://kafka:19092" in values["KAFKA_ADVERTISED_LISTENERS"]
    assert "HOST://127.0.0.1:9092" in values["KAFKA_ADVERTISED_LISTENERS"]
    assert published(kafka) == {9092: "127.0.0.1:9092"}
    factors = {k: v for k, v in values.items() if "REPLICATION_FACTOR" in k or k.endswith("MIN_ISR")}
    assert len(factors) >= 4
    assert set(factors.values()) == {"1"}
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_topic_init_creates_exactly_the_contract_topics_idempotently() -> None:
    init = COMPOSE["kafka-topics"]
    script = " ".join(init["command"])
    assert tuple(re.findall(r"userops\.[a-z]+\.v\d+", script)) == ALL_TOPICS
    for flag in ("--create", "--if-not-exists", "--partitions 12", "--replication-factor 1"):
        assert flag in script
    assert "--bootstrap-server kafka:19092" in script
    assert init["restart"] == "no"
    assert init["depends_on"] == {"kafka": {"condition": "service_healthy"}}


def test_prometheus_scrapes_every_service_at_its_port() -> None:
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    for name, svc in APPS.items():
        (sd,) = jobs[name]["dns_sd_configs"]
        assert (sd["names"], sd["type"]) == ([name], "A")
        assert sd["port"] == int(env(svc)[f"USEROPS_{name.upper()}_PORT"])
    assert PROMETHEUS["rule_files"] == ["alerts.yml"]
    prometheus = COMPOSE["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert published(prometheus) == {9090: "127.0.0.1:9090"}


def test_service_down_alert_covers_exactly_the_services_started_by_default() -> None:
    (down,) = [r for r in RULES if r.get("alert") == "UseropsServiceDown"]
    absent = set(re.findall(r'absent\(up\{job="(\w+)"\}\)', down["expr"]))
    assert absent == {name for name, svc in APPS.items() if not svc.get("profiles")}
    assert re.search(r"\bup == 0\b", down["expr"])


def test_every_alert_is_actionable() -> None:
    names = [r["alert"] for r in RULES]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS
    for rule in RULES:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"].keys() == {"summary", "description"}, rule["alert"]
        assert all(rule["annotations"].values()), rule["alert"]


def label_errors(expr: str, extra_labels: Iterable[str] = ()) -> list[str]:
    """Metrics unknown to the contract, and labels that none of the expression's metrics carry."""
    metrics = set(re.findall(r"\buserops_[a-z0-9_]+", expr))
    errors = [f"unknown metric {m}" for m in sorted(metrics - EXPOSED.keys())]
    allowed = set(TARGET_LABELS).union(*(EXPOSED.get(m, ()) for m in metrics))
    code = re.sub(r'"[^"]*"', '""', expr)
    used = set(extra_labels)
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", code):
        used |= {label.strip() for label in group.split(",") if label.strip()}
    for block in re.findall(r"\{([^{}]*)\}", code):
        used |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", block))
    return errors + [f"label {label} not on {sorted(metrics)}" for label in sorted(used - allowed)]


def test_alerts_use_only_exposed_metrics_and_their_labels() -> None:
    for rule in RULES:
        annotations = " ".join(rule["annotations"].values())
        templated = set(re.findall(r"\$labels\.(\w+)", annotations))
        assert label_errors(rule["expr"], templated) == [], rule["alert"]


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(expr, legendFormat) of every panel target, rows included."""
    panels = [p for top in board["panels"] for p in (top, *top.get("panels", []))]
    return [(t["expr"], t.get("legendFormat", "")) for p in panels for t in p.get("targets", [])]


def test_dashboards_use_only_exposed_metrics_and_their_labels() -> None:
    for file, board in DASHBOARDS.items():
        for expr, legend in dashboard_queries(board):
            legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
            assert label_errors(expr, legend_labels) == [], (file, expr)
        for var in board["templating"]["list"]:
            query = re.fullmatch(r"label_values\((.+), (\w+)\)", var["definition"])
            assert query, (file, var["name"])
            metric, label = query.groups()
            assert label_errors(metric, {label}) == [], (file, var["name"])


def test_every_exposed_metric_is_on_a_dashboard() -> None:
    shown = {
        m for b in DASHBOARDS.values() for e, _ in dashboard_queries(b) for m in re.findall(r"userops_\w+", e)
    }
    histogram_base = {re.sub(r"_(bucket|sum|count)$", "", m) for m in shown}
    assert set(COUNTERS) | set(GAUGES) <= shown
    assert set(HISTOGRAMS) <= histogram_base


def test_dashboards_are_valid_grafana_json() -> None:
    (source,) = DATASOURCES["datasources"]
    assert (source["url"], source["type"]) == ("http://prometheus:9090", "prometheus")
    titles = {board["title"] for board in DASHBOARDS.values()}
    assert {"userops / ingest", "userops / consumers", "userops / lifecycle"} == titles
    assert len({board["uid"] for board in DASHBOARDS.values()}) == len(DASHBOARDS)
    for file, board in DASHBOARDS.items():
        assert board["schemaVersion"] >= 39
        panels = [p for top in board["panels"] for p in (top, *top.get("panels", []))]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{file}: duplicate panel ids"
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (file, panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == source["uid"], (file, panel["title"])
            refs = [t["refId"] for t in panel["targets"]]
            assert refs, (file, panel["title"])
            assert len(refs) == len(set(refs)), (file, panel["title"])


def test_grafana_loads_the_provisioned_files() -> None:
    grafana = COMPOSE["grafana"]
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "userops.yml")
    (dashboards,) = provider["providers"]
    assert f"./deploy/grafana/dashboards:{dashboards['options']['path']}:ro" in grafana["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    home = env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).name in DASHBOARDS
    assert str(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]).startswith("${")
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}


def metric_name(node: ast.expr) -> str | None:
    """A metric name written as a literal, as f"{PREFIX}..." or as PREFIX + "..."; else None."""
    parts: list[ast.expr] = [node]
    if isinstance(node, ast.JoinedStr):
        parts = [p.value if isinstance(p, ast.FormattedValue) else p for p in node.values]
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = [node.left, node.right]
    text = ""
    for part in parts:
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            text += part.value
        elif isinstance(part, ast.Name) and part.id == "PREFIX":
            text += PREFIX
        else:
            return None
    return text


def metrics_defined_in_code() -> dict[str, tuple[str, frozenset[str] | None]]:
    """`userops_*` metrics constructed in services/ and shared/: name -> (kind, labels)."""
    found: dict[str, tuple[str, frozenset[str] | None]] = {}
    for path in [*(REPO / "services").rglob("*.py"), *(REPO / "shared").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            kind = getattr(node.func, "id", getattr(node.func, "attr", ""))
            name = metric_name(node.args[0])
            if kind not in {"Counter", "Gauge", "Histogram"} or not name or not name.startswith(PREFIX):
                continue
            labels_node = (
                node.args[2]
                if len(node.args) > 2
                else next((k.value for k in node.keywords if k.arg == "labelnames"), ast.List(elts=[]))
            )
            labels = None
            if isinstance(labels_node, ast.List | ast.Tuple):
                labels = frozenset(ast.literal_eval(labels_node))
            if kind == "Counter":
                name = name.removesuffix("_total") + "_total"
            found[name] = (kind, labels)
    return found


def test_code_defines_the_metrics_of_the_contract() -> None:
    kinds = {"Counter": COUNTERS, "Gauge": GAUGES, "Histogram": HISTOGRAMS}
    contract = {name: (kind, labels) for kind, table in kinds.items() for name, labels in table.items()}
    defined = metrics_defined_in_code()
    assert sorted(contract.keys() - defined.keys()) == [], "in the contract but defined nowhere"
    for name, (kind, labels) in defined.items():
        assert name in contract, (
            f"{name} is not in the deploy contract: add it to test_deploy.py and a dashboard"
        )
        assert kind == contract[name][0], name
        if labels is not None:
            assert labels == set(contract[name][1]), f"{name}: code labels {sorted(labels)}"


def test_image_installs_the_lockfile_as_non_root_without_secrets() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", dockerfile, re.M) == ["python:3.11-slim"] * 2
    uv_pin = re.search(r"uv==([\d.]+)", (REPO / "Makefile").read_text())
    assert uv_pin, "the Makefile pins uv"
    assert f'pip install "uv=={uv_pin.group(1)}"' in dockerfile
    assert "uv sync --frozen --no-dev" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users, "the image sets a user"
    assert users[-1] not in {"root", "0"}
    instructions = dockerfile.replace("\\\n", " ").splitlines()
    settings = [line for line in instructions if re.match(r"(ENV|ARG)\b", line)]
    assert settings, "the image sets its environment"
    assert not [s for s in settings if re.search(r"PASSWORD|TOKEN|SECRET|WRITE_KEY", s)]
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".env", ".git", ".venv", ".local", ".tools"} <= ignored
    assert not {"pyproject.toml", "uv.lock", "README.md", "services", "shared", "config"} & ignored


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt: prometheus)")
def test_promtool_accepts_config_rules_and_every_dashboard_query(tmp_path: Path) -> None:
    def promtool(*args: str) -> None:
        done = subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts.test.yml"))
    variables = {"$__rate_interval": "1m", "$consumer": ".*", "$instance": ".*"}
    rules = []
    for file, board in sorted(DASHBOARDS.items()):
        for i, (expr, _) in enumerate(dashboard_queries(board)):
            for var, value in variables.items():
                expr = expr.replace(var, value)
            rules.append({"record": f"dashboard:{Path(file).stem.replace('-', '_')}:{i}", "expr": expr})
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    promtool("check", "rules", str(tmp_path / "queries.yml"))
