"""`python -m scripts.stack.fetch`: fetch the Kafka jars once (part of `make install`)."""

from __future__ import annotations

import sys

from scripts.stack import StackError
from scripts.stack.kafka import ensure_libs
from scripts.stack.settings import StackSettings


def main() -> int:
    try:
        ensure_libs(StackSettings().kafka.libs)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
