"""`make run SEGMENTER_PROCESSES=2`: several segmenter processes, each its own id and port."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scripts.stack.services import local_services, service_env, service_port, service_specs
from scripts.stack.settings import StackSettings


def test_two_segmenter_processes_share_the_group_with_their_own_ids_and_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEGMENTER_PROCESSES", "2")  # as `make run SEGMENTER_PROCESSES=2` passes it
    settings = StackSettings(segmenter_port=18001)
    assert settings.segmenter_processes == 2
    env = service_env(settings, {"USEROPS_SEGMENTER_INSTANCE_ID": "ignored"}, local_services())
    specs = {s.name: s for s in service_specs(settings, env)}
    first, second = specs["segmenter"], specs["segmenter-1"]
    assert [first.env["USEROPS_SEGMENTER_INSTANCE_ID"], second.env["USEROPS_SEGMENTER_INSTANCE_ID"]] == [
        "local-segmenter-0",
        "local-segmenter-1",
    ]
    assert [first.env["USEROPS_SEGMENTER_PORT"], second.env["USEROPS_SEGMENTER_PORT"]] == ["18001", "18101"]
    assert second.ready_url == "http://127.0.0.1:18101/ready"
    assert service_port(settings, "segmenter-1") == 18101
    assert first.env.get("USEROPS_SEGMENTER_GROUP") == second.env.get("USEROPS_SEGMENTER_GROUP")
    assert "segmenter-2" not in specs and "rewards-1" not in specs


def test_one_segmenter_process_by_default_and_a_bad_count_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGMENTER_PROCESSES", raising=False)
    monkeypatch.delenv("USEROPS_SEGMENTER_PROCESSES", raising=False)
    assert [s.name for s in service_specs(StackSettings(), {})].count("segmenter") == 1
    monkeypatch.setenv("USEROPS_SEGMENTER_PROCESSES", "0")
    with pytest.raises(ValidationError, match="SEGMENTER_PROCESSES"):
        StackSettings()
