"""JSON logs for every service: structlog's and the standard library's, one object per line.

`configure_logging(service)` installs one stdout handler on the root logger whose formatter is
structlog's `ProcessorFormatter`. structlog loggers and the libraries' stdlib loggers (uvicorn,
alembic, aiokafka, sqlalchemy, asyncio) therefore share one path and one shape:

    {"event": "...", "level": "info", "logger": "uvicorn.error", "service": "segmenter",
     "timestamp": "2026-01-01T00:00:00.000000Z", "exception": "Traceback ..."}

An exception is a field (`exception`), never a multi-line traceback on its own, so every line a
service writes parses as JSON. Never put secrets or user ids in log *keys* (values are fine when
they are not secrets; keys are what log pipelines index).
"""

from __future__ import annotations

import logging
import sys
from typing import Final, cast

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

# aiokafka logs every metadata retry at INFO/ERROR during a broker outage (hundreds of thousands
# of lines); the services log the state change themselves, so these stay at WARNING or above.
QUIET_LOGGERS: Final = ("aiokafka", "kafka")
_TRACEBACK: Final = "Traceback (most recent call last):"


def _level_number(level: str) -> int:
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO


def _add_service(service: str) -> Processor:
    def add(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add


def _stringify_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # A stdlib record's message may be any object (uvicorn passes strings, others exceptions).
    event = event_dict.get("event")
    if event is not None and not isinstance(event, str):
        event_dict["event"] = str(event)
    return event_dict


def _traceback_as_field(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn logs a failed lifespan as `logger.error(traceback.format_exc())`: the traceback is
    # the message. Move it to `exception` and keep its last line (the error) as the event.
    event = event_dict.get("event")
    if isinstance(event, str) and event.startswith(_TRACEBACK) and "exception" not in event_dict:
        event_dict["exception"] = event.rstrip()
        event_dict["event"] = event.rstrip().rsplit("\n", 1)[-1]
    return event_dict


def _drop_stdlib_internals(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn passes `color_message` as `extra`; it duplicates `event` with ANSI codes.
    event_dict.pop("color_message", None)
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route every logger of this process to stdout as JSON lines tagged with `service`.

    Idempotent: a second call replaces the handler (uvicorn workers call it once more).
    """
    lvl = _level_number(level)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_stdlib_internals,
            _stringify_event,
            _traceback_as_field,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))
    # uvicorn's own loggers: no handlers of their own, so they reach the root's JSON handler.
    for name in ("uvicorn", "uvicorn.error"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    # No access log in any service: its lines would carry query-string secrets (`?writeKey=`,
    # unsubscribe and inbox tokens), and one line per request floods the log under load.
    logging.getLogger("uvicorn.access").disabled = True
    logging.captureWarnings(True)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named `name` (the `logger` field of its lines)."""
    return cast("structlog.stdlib.BoundLogger", structlog.get_logger(name))
