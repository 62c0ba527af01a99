"""How a failure is written down on a durable row (a timer, a job): short, and without secrets.

Operators read `last_error` in `userops jobs failed` / `userops timers dead`, so it names the
error; it is stored in the service's database and printed on terminals, so it never carries a
password, a token or the parameters of a SQL statement (user data).
"""

from __future__ import annotations

import re
from typing import Final

from sqlalchemy import exc as sa_exc

LIMIT: Final = 500
_URL_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)
_SECRET_VALUE = re.compile(
    r"\b(password|passwd|pwd|secret|token|api[_-]?key|authorization|signature)(\"?\s*[=:]\s*)"
    r"(bearer\s+|basic\s+)?(\"[^\"]*\"|'[^']*'|[^\s,;&]+)",
    re.IGNORECASE,
)


def failure_text(exc: BaseException, limit: int = LIMIT) -> str:
    """`Type: message`, with credentials masked, cut to `limit` characters."""
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        # SQLAlchemy's own message repeats the statement and its bound parameters: keep the driver's.
        exc = exc.orig
    message = " ".join(str(exc).split())  # one line in a table cell
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _SECRET_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
