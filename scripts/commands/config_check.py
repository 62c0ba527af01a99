"""`userops config check`: would every service start with this configuration?

For each service it builds the settings from the environment (`USEROPS_*`) with the service's own
settings class and loads its YAML file with the very function the service calls at start (ingest
also resolves each source's write key from the environment), so a file or variable that passes
here passes there, and an error reads the same: the file, the field and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scripts.commands.endpoints import DEV_ADMIN_TOKEN, DEV_WRITE_KEY

SERVICES: Final = ("ingest", "segmenter", "rewards", "notifier")


class _ConfigPaths(BaseSettings):
    """Where each service looks for its file, read as the services read it (even when other
    settings of theirs are invalid)."""

    model_config = SettingsConfigDict(env_prefix="USEROPS_", frozen=True, extra="ignore")

    config_dir: Path = Path("config")
    ingest_config: Path | None = None
    segmenter_config: Path | None = None
    rewards_config: Path | None = None
    notifier_config: Path | None = None

    def path(self, service: str) -> Path:
        own: Path | None = getattr(self, f"{service}_config")
        return own or self.config_dir / f"{service}.yaml"


@dataclass
class ServiceCheck:
    """One service's verdict: its config file and every problem found (none: it would start)."""

    service: str
    path: Path
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _settings_class(service: str) -> type[BaseSettings]:
    if service == "ingest":
        from services.ingest.config import IngestSettings

        return IngestSettings
    if service == "segmenter":
        from services.segmenter.settings import SegmenterSettings

        return SegmenterSettings
    if service == "rewards":
        from services.rewards.settings import RewardsSettings

        return RewardsSettings
    from services.notifier.settings import NotifierSettings

    return NotifierSettings


def _loader(service: str) -> Callable[[Path], Any]:
    """The function the service's `main()` validates its file with."""
    if service == "ingest":
        from services.ingest.config import load_config as ingest_config

        return ingest_config
    if service == "segmenter":
        from services.segmenter.main import load_config as segmenter_config
        from services.segmenter.settings import SegmenterSettings

        return lambda path: segmenter_config(SegmenterSettings.model_construct(segmenter_config=path))
    if service == "rewards":
        from services.rewards.config import load_config as rewards_config

        return rewards_config
    from services.notifier.config import load_config as notifier_config

    return notifier_config


def _setting_problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        name = f"USEROPS_{str(err['loc'][0]).upper()}" if err["loc"] else "USEROPS_*"
        out.append(f"environment {name}: {err['msg']}")
    return out


def _file_problems(message: str, path: Path) -> list[str]:
    """A ConfigError's message (`<file>: field 'a': ...; field 'b': ...`) as one line per field."""
    text = message.removeprefix(f"{path}: ")
    return [p if i == 0 else "field '" + p for i, p in enumerate(text.split("; field '"))]


def check_service(service: str, directory: Path | None = None) -> ServiceCheck:
    """Validate one service's environment settings and YAML file, as its `main()` does."""
    from shared.config import ConfigError

    path = directory / f"{service}.yaml" if directory is not None else _ConfigPaths().path(service)
    result = ServiceCheck(service, path)
    try:
        _settings_class(service)()
    except ValidationError as exc:
        result.problems += _setting_problems(exc)
    try:
        _loader(service)(path)
    except ConfigError as exc:
        result.problems += _file_problems(str(exc), path)
    return result


def local_defaults() -> dict[str, str]:
    """`make run`'s local-only values for the secrets a fresh clone does not set."""
    from scripts.stack.services import DEV_NOTIFIER_ENV

    return {
        "USEROPS_DEV_WRITE_KEY": DEV_WRITE_KEY,
        "USEROPS_ADMIN_TOKEN": DEV_ADMIN_TOKEN,
        **DEV_NOTIFIER_ENV,
    }


@contextmanager
def environment_defaults(defaults: Mapping[str, str]) -> Iterator[None]:
    """Set the variables of `defaults` that are unset, for the duration of the block."""
    added = [name for name in defaults if name not in os.environ]
    os.environ.update({name: defaults[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def config_check_cmd(
    directory: Path | None = typer.Option(
        None, "--dir", file_okay=False, help="check <dir>/<service>.yaml (default: where each service looks)"
    ),
    services: list[str] = typer.Option(None, "--service", help="only this service (repeatable)"),
    local: bool = typer.Option(
        False, "--local", help="use make run's local-only secrets for variables that are unset"
    ),
) -> None:
    """Validate every service's config file and environment settings, as each does at start.

    Prints OK per service, or the file, the field and the reason; exits 1 if any would not start.

    Example: userops config check --dir config --local
    """
    chosen = services or list(SERVICES)
    unknown = sorted(set(chosen) - set(SERVICES))
    if unknown:
        from scripts.commands import fail

        fail(f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICES)}", 2)
    with environment_defaults(local_defaults() if local else {}):
        results = [check_service(s, directory) for s in chosen]
    table = Table(title="userops config check", show_lines=True)
    table.add_column("service", style="bold")
    table.add_column("config file")
    table.add_column("result", overflow="fold")
    for r in results:
        verdict = "[green]OK[/green]" if r.ok else "\n".join(f"[red]✗[/red] {escape(p)}" for p in r.problems)
        table.add_row(r.service, escape(str(r.path)), verdict)
    Console().print(table)
    failed = [r.service for r in results if not r.ok]
    if failed:
        typer.secho(f"error: invalid configuration: {', '.join(failed)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
