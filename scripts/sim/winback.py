"""Who the notifier would message when they slip to `at_risk`: the model's win-back effect.

The notifier assigns each user's holdout group by a stable hash of (campaign, user)
(`services.notifier.domain.assignment`); the simulated users outside the holdout of the
campaigns that trigger on `at_risk` are the ones a win-back message can bring back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from services.notifier.config import load_config
from services.notifier.domain.assignment import unit_hash
from services.notifier.domain.triggers import StageTrigger


def winback_treatment(config: Path) -> Callable[[str], bool]:
    """`treated(user_id)`: the user gets an at-risk campaign's message (not held out).
    Without such a campaign in `config`, nobody is treated. Raises `ConfigError` for a bad file."""
    cfg = load_config(config)
    campaigns = [
        (c.name, c.holdout)
        for c in cfg.campaigns
        if c.enabled and isinstance(c.trigger, StageTrigger) and "at_risk" in c.trigger.stage_changed.to
    ]

    def treated(user_id: str) -> bool:
        return any(unit_hash("holdout", name, user_id) >= holdout for name, holdout in campaigns)

    return treated
