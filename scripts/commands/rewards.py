"""`userops rewards simulate`: what new rewards rules would have awarded and cost on recorded history.

Recorded events (NDJSON of wire events, as ingest publishes them) become rewards inputs with the
input ids the live service gives them; lifecycle records come from a recorded
`userops.lifecycle.v1` NDJSON file (`--lifecycle`), or else are derived from the same events by
the segmenter's own replay (`services.segmenter.domain.replay`, with `--segmenter-config`). Both
are replayed through the rewards domain's `simulate` (the live service's `decide`, with timers
firing when due) and the points awarded and their cost are printed per rule and per UTC day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from scripts.commands import fail

rewards_app = typer.Typer(
    help="The rewards service: try rules on history before they go live.", no_args_is_help=True
)


@rewards_app.callback()
def _group() -> None:
    """The rewards service's commands."""


def _lifecycle_file(path: Path) -> Iterator[Any]:
    from services.rewards.domain.inputs import LifecycleInput
    from shared import topics
    from shared.contracts import ContractError, parse_lifecycle
    from shared.ids import input_id

    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = parse_lifecycle(line)
            except ContractError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from exc
            yield LifecycleInput.from_record(input_id(topics.LIFECYCLE, record.user_id, record.id), record)


def _derived_lifecycle(events: list[Any], segmenter_config: Path, until: datetime) -> list[Any]:
    """Stage changes the segmenter's replay finds in `events`, as rewards inputs. The replay's
    history carries no `activated` flag: a user counts as activated from their first
    `activated` stage on."""
    from services.rewards.domain.inputs import LifecycleInput
    from services.segmenter.config import SegmenterConfig
    from services.segmenter.domain.replay import replay
    from shared import topics
    from shared.config import load_yaml
    from shared.ids import input_id

    result = replay(events, load_yaml(segmenter_config, SegmenterConfig), until, keep_history=True)
    activated: set[str] = set()
    out = []
    for change in result.history:
        if change.to_stage == "activated":
            activated.add(change.user_id)
        out.append(
            LifecycleInput(
                input_id(topics.LIFECYCLE, change.user_id, change.event_id),
                change.user_id,
                "stage_changed",
                change.at,
                from_stage=change.from_stage,
                to_stage=change.to_stage,
                activated=change.user_id in activated,
            )
        )
    return out


@rewards_app.command()
def simulate(
    events: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="NDJSON file of wire events (.gz ok)"
    ),
    config: Path = typer.Option(Path("config/rewards.yaml"), help="the rewards rules to try"),
    lifecycle: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="NDJSON of recorded userops.lifecycle.v1 records"
    ),
    segmenter_config: Path = typer.Option(
        Path("config/segmenter.yaml"), help="derive lifecycle records with these segmenter rules"
    ),
    until: str | None = typer.Option(None, help="fire timers up to this ISO-8601 instant (default: now)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Replay recorded events through new rewards rules; print points awarded and cost per rule and day.

    Example: userops rewards simulate --config new.yaml events.ndjson --until 2026-01-01T00:00:00Z
    """
    import orjson

    from services.rewards.config import load_config
    from services.rewards.domain.inputs import EventInput
    from services.rewards.domain.simulate import simulate as run
    from services.segmenter.domain.replay import read_ndjson
    from shared import topics
    from shared.config import ConfigError
    from shared.events import format_ts, parse_ts
    from shared.ids import input_id

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        fail(str(exc), 2)
    try:
        end = parse_ts(until, "--until") if until else datetime.now(UTC)
        recorded = list(read_ndjson(events))
        inputs: list[Any] = [EventInput(input_id(topics.EVENTS, e.key, e.message_id), e) for e in recorded]
        if lifecycle is not None:
            inputs += list(_lifecycle_file(lifecycle))
        else:
            inputs += _derived_lifecycle(recorded, segmenter_config, end)
    except ConfigError as exc:
        fail(str(exc), 2)
    except (ValueError, OSError) as exc:
        fail(str(exc), 2)
    report = run(inputs, cfg, until=end)
    if as_json:
        typer.echo(
            orjson.dumps(
                {
                    "until": format_ts(end),
                    "inputs": report.inputs,
                    "timersFired": report.timers_fired,
                    "rules": {
                        rule: {
                            "awards": t.awards,
                            "awarded": t.awarded,
                            "reversed": t.reversed,
                            "cost": t.cost,
                            "expired": t.expired,
                            "skipped": t.skipped,
                        }
                        for rule, t in sorted(report.per_rule.items())
                    },
                    "days": [
                        {
                            "day": d.isoformat(),
                            "rule": rule,
                            "awards": t.awards,
                            "awarded": t.awarded,
                            "cost": t.cost,
                        }
                        for d, rule, t in report.rows()
                    ],
                    "outputs": dict(sorted(report.output_counts.items())),
                    "budgetsRemaining": report.budgets_remaining,
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        return
    typer.echo(
        f"replayed {report.inputs} inputs up to {format_ts(end)} ({report.timers_fired} timers fired)\n"
    )
    typer.echo(
        f"{'rule':<24} {'awards':>8} {'awarded':>10} {'reversed':>9} {'cost':>10} {'expired':>9} {'skipped':>8}"
    )
    for rule, t in sorted(report.per_rule.items()):
        typer.echo(
            f"{rule:<24} {t.awards:>8} {t.awarded:>10} {t.reversed:>9} {t.cost:>10} {t.expired:>9} {t.skipped:>8}"
        )
    total = sum(t.cost for t in report.per_rule.values())
    typer.echo(f"{'total cost':<24} {'':>8} {'':>10} {'':>9} {total:>10}\n")
    typer.echo(f"{'day':<12} {'rule':<24} {'awards':>8} {'awarded':>10} {'cost':>10}")
    for d, rule, t in report.rows():
        typer.echo(f"{d.isoformat():<12} {rule:<24} {t.awards:>8} {t.awarded:>10} {t.cost:>10}")
    if report.budgets_remaining:
        typer.echo("\nbudget remaining")
        for rule, left in sorted(report.budgets_remaining.items()):
            typer.echo(f"{rule:<24} {left:>10}")
