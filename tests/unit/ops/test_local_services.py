"""What `make run` starts and tells each service (no processes started here)."""

from __future__ import annotations

from pathlib import Path

from scripts.cli import migrated_services
from scripts.stack.services import instance_id, local_services, service_env, service_specs
from scripts.stack.settings import StackSettings

REPO = Path(__file__).resolve().parents[3]


def test_every_service_with_a_main_module_runs_locally_and_only_those() -> None:
    names = local_services()
    assert {"ingest", "segmenter"} <= set(names)
    for name in names:
        assert (REPO / "services" / name / "__main__.py").is_file()
    assert names[0] == "ingest"


def test_each_consumer_replica_has_a_stable_instance_id_and_its_own_port() -> None:
    settings = StackSettings(kafka_port=19092, pg_port=15432, ingest_port=18000, segmenter_port=18001)
    env = service_env(settings, {"PATH": "/bin"}, local_services())
    assert env["USEROPS_KAFKA_BOOTSTRAP"] == "127.0.0.1:19092"
    assert env["USEROPS_PG_PORT"] == "15432"
    specs = {s.name: s for s in service_specs(settings, env)}
    segmenter = specs["segmenter"]
    assert segmenter.env["USEROPS_SEGMENTER_INSTANCE_ID"] == "local-segmenter-0"
    assert segmenter.ready_url == "http://127.0.0.1:18001/ready"
    assert segmenter.command[1:] == ("-m", "services.segmenter")
    assert not any(k.endswith("_INSTANCE_ID") for k in specs["ingest"].env)  # not a consumer
    assert instance_id("rewards", 2) == "local-rewards-2"


def test_an_instance_id_set_by_the_operator_wins() -> None:
    env = {"USEROPS_SEGMENTER_INSTANCE_ID": "mine"}
    (segmenter,) = [s for s in service_specs(StackSettings(), env) if s.name == "segmenter"]
    assert segmenter.env["USEROPS_SEGMENTER_INSTANCE_ID"] == "mine"


def test_services_with_migrations_are_found_from_the_tree() -> None:
    found = migrated_services()
    assert "segmenter" in found
    assert set(found) == {p.parent.name for p in (REPO / "services").glob("*/migrations") if p.is_dir()}
    assert "ingest" not in found
