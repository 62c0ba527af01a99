"""The Docker deployment keeps the contract its users rely on (DESIGN.md §1 and §7).

docker-compose.yml, the Dockerfile, the Prometheus config and alert rules and the Grafana
dashboards are checked as parsed files: every service is reachable, healthy-checked and started
after what it needs; topics match shared.topics; Prometheus scrapes every service; alerts and
dashboards name only metrics (and labels) the services really expose. No Docker needed.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from shared.config import BaseServiceSettings
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
    "userops_timer_failures_total": ("service", "kind", "outcome"),
    "userops_jobs_succeeded_total": ("service", "kind"),
    "userops_jobs_failed_total": ("service", "kind"),
    "userops_jobs_retried_total": ("service", "kind"),
    "userops_segmenter_transitions_total": ("from_stage", "to_stage"),
    "userops_segmenter_amounts_rejected_total": (),
    "userops_rewards_points_awarded_total": ("rule",),
    "userops_rewards_points_redeemed_total": ("rule",),
    "userops_rewards_points_expired_total": ("rule",),
    "userops_rewards_points_reversed_total": ("rule",),
    "userops_rewards_awards_skipped_total": ("rule", "reason"),
    "userops_rewards_redemptions_total": ("outcome",),
    "userops_notifier_messages_total": ("campaign", "channel", "outcome"),
    "userops_notifier_inputs_evaluated_total": ("source",),
}
GAUGES: Final = {
    "userops_consumer_lag": ("consumer", "topic", "partition"),
    "userops_consumer_ready": ("consumer",),
    "userops_outbox_backlog": ("service",),
    "userops_timer_backlog": ("service",),
    "userops_timers_dead": ("service", "kind"),
    "userops_jobs_queued": ("service", "kind"),
    "userops_jobs_running": ("service", "kind"),
    "userops_jobs_oldest_due_seconds": ("service", "kind"),
    "userops_segmenter_users": ("stage",),
    "userops_segmenter_segment_members": ("segment",),
    "userops_rewards_budget_remaining": ("rule",),
    "userops_rewards_budget_limit": ("rule",),
}
HISTOGRAMS: Final = {
    "userops_http_request_duration_seconds": ("route", "method"),
    "userops_ingest_produce_duration_seconds": (),
    "userops_ingest_batch_size": (),
    "userops_consumer_processing_seconds": ("consumer",),
    "userops_consumer_end_to_end_seconds": ("consumer",),
    "userops_job_attempt_seconds": ("service", "kind"),
    "userops_notifier_delivery_seconds": ("channel",),
    "userops_notifier_event_to_message_seconds": ("channel",),
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
    "UseropsConsumerNotReady", "UseropsConsumerRetrying", "UseropsOutboxBacklogGrowing",
    "UseropsTimerBacklogGrowing", "UseropsEndToEndLatencyHigh", "UseropsJobsFailed",
    "UseropsJobsBacklog", "UseropsTimersDead", "UseropsRewardsBudgetLow",
    "UseropsNotifierDeliveriesFailing",
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
    # A service run as several replicas (`--scale`) publishes a range: each replica takes one.
    scaled = {"segmenter": "127.0.0.1:8011-8019"}
    assert published(svc) == {port: scaled.get(name, f"127.0.0.1:{port}")}
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


def test_no_two_services_publish_the_same_host_port() -> None:
    taken: dict[int, str] = {}
    for name, svc in COMPOSE.items():
        for host in published(svc).values():
            first, _, last = host.split(":")[1].partition("-")
            for port in range(int(first), int(last or first) + 1):
                assert port not in taken, f"{name} and {taken.get(port)} both publish {port}"
                taken[port] = name


def test_ingest_gets_the_write_key_its_config_names_from_the_environment() -> None:
    sources = load_yaml(REPO / "config" / "ingest.yaml")["sources"]
    for source in sources:
        variable = source["write_key_env"]
        assert str(APPS["ingest"]["environment"][variable]).startswith(f"${{{variable}:-")


def test_no_two_services_share_a_database_server() -> None:
    hosts = [env(svc).get("USEROPS_PG_HOST") for svc in APPS.values()]
    owned = [h for h in hosts if h]
    assert len(owned) == len(set(owned)) == 3


def test_default_profile_starts_every_service_and_waits_only_for_what_it_starts() -> None:
    for name in APPS:
        assert (REPO / "services" / name / "__main__.py").exists(), f"{name} is not written yet"
        assert not APPS[name].get("profiles"), f"{name} is not started by `docker compose up`"
    for name, svc in COMPOSE.items():
        for dep in svc.get("depends_on", {}):
            assert set(COMPOSE[dep].get("profiles", [])) <= set(svc.get("profiles", [])), (name, dep)


def settings_class(name: str) -> type[BaseServiceSettings]:
    """The `BaseServiceSettings` subclass a service reads its environment with."""
    module_name = "settings" if (REPO / "services" / name / "settings.py").exists() else "config"
    module = importlib.import_module(f"services.{name}.{module_name}")
    (found,) = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, BaseServiceSettings) and c.__module__ == module.__name__
    ]
    return found


@pytest.mark.parametrize("name", sorted(APPS))
def test_each_service_starts_with_the_environment_compose_gives_it(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every required setting is there and every value (secret formats included) validates, with
    the defaults compose falls back to; and compose sets no variable the service does not read."""
    cls = settings_class(name)
    values = env(APPS[name])
    known = {f"USEROPS_{field.upper()}" for field in cls.model_fields}
    write_keys = {s["write_key_env"] for s in load_yaml(REPO / "config" / "ingest.yaml")["sources"]}
    shared = {"USEROPS_ADMIN_TOKEN"}  # x-userops-env, for the services with admin endpoints
    unknown = {k for k in values if k.startswith("USEROPS_")} - known - write_keys - shared
    assert sorted(unknown) == [], f"{name} has no such settings"
    for variable in [v for v in os.environ if v.startswith("USEROPS_")]:
        monkeypatch.delenv(variable)
    for variable, value in values.items():
        monkeypatch.setenv(variable, value)
    settings = cls()
    assert getattr(settings, f"{name}_port") == int(values[f"USEROPS_{name.upper()}_PORT"])


def test_env_example_lists_every_variable_compose_reads() -> None:
    lines = (REPO / "docker-compose.yml").read_text().splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    variables = set(re.findall(r"(?<!\$)\$\{(\w+)", code))  # $${X} is the container's own
    listed = set(re.findall(r"^(?:# )?(\w+)=", (DEPLOY / "env.example").read_text(), re.M))
    assert sorted(variables - listed) == [], "add them to deploy/env.example"
    assert sorted(listed - variables) == [], "docker-compose.yml does not read them"


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


def test_every_alert_has_a_rule_unit_test_that_fires_and_one_that_stays_quiet() -> None:
    """deploy/prometheus/alerts.test.yml (run by promtool below) covers every alert both ways."""
    tests = load_yaml(DEPLOY / "prometheus" / "alerts.test.yml")
    assert tests["rule_files"] == ["alerts.yml"]
    cases = [case for test in tests["tests"] for case in test.get("alert_rule_test", [])]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    names = {rule["alert"] for rule in RULES}
    assert sorted(names - fires) == [], "alerts never shown to fire"
    assert sorted(names - quiet) == [], "alerts never shown to stay quiet"
    assert sorted((fires | quiet) - names) == [], "tests of alerts that do not exist"


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


def dashboard_variables() -> set[str]:
    """The names of the template variables of every dashboard."""
    return {var["name"] for board in DASHBOARDS.values() for var in board["templating"]["list"]}


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
    assert titles == {
        "userops / ingest", "userops / consumers", "userops / lifecycle", "userops / rewards",
        "userops / notifier",
    }  # fmt: skip
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


def literal_labels(node: ast.expr | None) -> frozenset[str] | None:
    """The label names of a literal list or tuple of strings; else None."""
    if not isinstance(node, ast.List | ast.Tuple):
        return None
    if not all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return None
    return frozenset(ast.literal_eval(node))


def label_names(node: ast.expr, tree: ast.Module) -> frozenset[str] | None:
    """A metric's label names: a literal list, or a variable that the module binds nowhere but in
    plain assignments of one and the same literal list (`labels = ["service", "kind"]` shared by
    several metrics); None when they cannot be read without running the code."""
    if not isinstance(node, ast.Name):
        return literal_labels(node)
    values = [
        literal_labels(a.value)
        for a in ast.walk(tree)
        if isinstance(a, ast.Assign | ast.AnnAssign)
        for target in (a.targets if isinstance(a, ast.Assign) else [a.target])
        if isinstance(target, ast.Name) and target.id == node.id
    ]
    bindings = [
        n
        for n in ast.walk(tree)
        if (isinstance(n, ast.Name) and n.id == node.id and isinstance(n.ctx, ast.Store))
        or (isinstance(n, ast.arg) and n.arg == node.id)
    ]
    if not values or None in values or len(set(values)) != 1 or len(bindings) != len(values):
        return None
    return values[0]


def metrics_defined_in_code() -> dict[str, tuple[str, frozenset[str] | None]]:
    """`userops_*` metrics constructed in services/ and shared/: name -> (kind, labels)."""
    found: dict[str, tuple[str, frozenset[str] | None]] = {}
    for path in [*(REPO / "services").rglob("*.py"), *(REPO / "shared").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
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
            labels = label_names(labels_node, tree)
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
        assert labels is not None, (
            f"{name}: its labels are not readable here; write them as a literal list or a variable "
            "assigned one literal list, so the contract can check them"
        )
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
    variables = {"$__rate_interval": "1m", **{f"${v}": ".*" for v in dashboard_variables()}}
    rules = []
    for file, board in sorted(DASHBOARDS.items()):
        for i, (expr, _) in enumerate(dashboard_queries(board)):
            for var, value in variables.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, (file, expr)  # a variable the dashboard does not define
            rules.append({"record": f"dashboard:{Path(file).stem.replace('-', '_')}:{i}", "expr": expr})
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    promtool("check", "rules", str(tmp_path / "queries.yml"))
