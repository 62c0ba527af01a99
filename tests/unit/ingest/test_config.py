"""config/ingest.yaml validation and write keys from the environment (services/ingest/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ingest.config import IngestSettings, load_config
from services.ingest.domain.write_key import KeyRing
from shared.config import ConfigError

REPO = Path(__file__).resolve().parents[3]

VALID = """
sources:
  - {id: web, name: Website, write_key_env: WEB_KEY}
  - {id: legacy, write_key_env: LEGACY_KEY, enabled: false}
limits: {max_event_bytes: 1000, max_request_bytes: 5000, max_batch_events: 10}
rate_limit: {enabled: true, events_per_second: 5, burst: 10}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ingest.yaml"
    path.write_text(text)
    return path


def test_the_shipped_config_loads_with_the_dev_key() -> None:
    config = load_config(REPO / "config" / "ingest.yaml", {"USEROPS_DEV_WRITE_KEY": "k"})
    assert KeyRing(config.keys).authenticate("k") == "dev"
    assert config.limits.max_event_bytes == 32768
    assert not config.rules.rate_limit.enabled


def test_keys_come_from_the_named_variables(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), {"WEB_KEY": "w", "LEGACY_KEY": "l"})
    ring = KeyRing(config.keys)
    assert ring.authenticate("w") == "web"
    assert config.limits.max_batch_events == 10
    assert config.rules.rate_limit.burst == 10
    assert "w" not in repr(config).replace("web", "")


def test_a_missing_key_variable_stops_the_start_naming_file_field_and_variable(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    with pytest.raises(ConfigError) as info:
        load_config(path, {"LEGACY_KEY": "l"})
    message = str(info.value)
    assert str(path) in message
    assert "sources[0].write_key_env" in message
    assert "WEB_KEY" in message


def test_a_disabled_source_needs_no_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), {"WEB_KEY": "w"})
    assert [k.source_id for k in config.keys] == ["web"]


def test_two_sources_may_not_share_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\[1\]\.write_key_env.*same write key"):
        load_config(write(tmp_path, VALID), {"WEB_KEY": "same", "LEGACY_KEY": "same"})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sources: []", "field 'sources'"),
        ("sources:\n  - {id: a, write_key_env: K, colour: red}", "field 'sources[0].colour'"),
        ("sources:\n  - {id: 'bad id', write_key_env: K}", "field 'sources[0].id'"),
        ("sources:\n  - {id: a, write_key_env: K}\n  - {id: a, write_key_env: J}", "used twice"),
        ("sources:\n  - {id: a, write_key_env: K}\nlimits: {max_event_bytes: 0}", "limits.max_event_bytes"),
        (
            "sources:\n  - {id: a, write_key_env: K}\nlimits: {max_event_bytes: 10, max_request_bytes: 5}",
            "max_event_bytes must not exceed max_request_bytes",
        ),
        ("sources: [", "not valid YAML"),
    ],
)
def test_invalid_files_name_the_field_and_the_problem(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {"K": "k", "J": "j"})
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USEROPS_INGEST_PORT", "9123")
    monkeypatch.setenv("USEROPS_INGEST_WORKERS", "3")
    monkeypatch.setenv("USEROPS_INGEST_EVENTS_TOPIC", "t.v1")
    monkeypatch.setenv("USEROPS_CONFIG_DIR", "/etc/userops")
    settings = IngestSettings()
    assert (settings.ingest_port, settings.ingest_workers, settings.ingest_events_topic) == (9123, 3, "t.v1")
    assert settings.config_path == Path("/etc/userops/ingest.yaml")
    monkeypatch.setenv("USEROPS_INGEST_CONFIG", "/tmp/x.yaml")
    assert IngestSettings().config_path == Path("/tmp/x.yaml")
