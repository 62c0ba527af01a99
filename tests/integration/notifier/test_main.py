"""Start-up refusals: an invalid config or missing secrets exit 2 naming the file and the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scripts.stack.kafka import REPO_ROOT
from tests.integration.notifier.harness import ADMIN_TOKEN, INBOX_SECRET, UNSUBSCRIBE_SECRET, WEBHOOK_SECRET

SHIPPED = REPO_ROOT / "config" / "notifier.yaml"


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.notifier"],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


SECRETS = {
    "USEROPS_ADMIN_TOKEN": ADMIN_TOKEN,
    "USEROPS_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "USEROPS_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
    "USEROPS_INBOX_SECRET": INBOX_SECRET,
}


def test_invalid_config_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "notifier.yaml"
    bad.write_text(SHIPPED.read_text().replace("holdout: 0.10", "holdout: 1.5"))
    done = start({**SECRETS, "USEROPS_NOTIFIER_CONFIG": str(bad)})
    assert done.returncode == 2
    assert str(bad) in done.stderr
    assert "campaigns[2].holdout" in done.stderr

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        SHIPPED.read_text().replace("{stage_changed: {to: [at_risk]}}", "{stage_entered: at_risk}")
    )
    done = start({**SECRETS, "USEROPS_NOTIFIER_CONFIG": str(unknown)})
    assert done.returncode == 2 and "campaigns[2].trigger" in done.stderr


def test_missing_or_malformed_secret_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in SECRETS.items() if k != "USEROPS_INBOX_SECRET"}
    done = start({**env, "USEROPS_NOTIFIER_CONFIG": str(SHIPPED), "USEROPS_INBOX_SECRET": ""})
    assert done.returncode == 2 and "inbox_secret" in done.stderr
    done = start({**SECRETS, "USEROPS_WEBHOOK_SECRET": "plain-text", "USEROPS_NOTIFIER_CONFIG": str(SHIPPED)})
    assert done.returncode == 2 and "webhook_secret" in done.stderr and "whsec_" in done.stderr
