"""The local userops stack without Docker: a real single-node Kafka and a real PostgreSQL.

Everything lives under one home folder (git-ignored, `.local/` by default) so the stack can be
started, stopped and inspected idempotently from the Makefile, the `userops dev` CLI and tests.
"""

from scripts.stack.errors import StackError
from scripts.stack.kafka import KafkaNode
from scripts.stack.postgres import PostgresNode

__all__ = ["KafkaNode", "PostgresNode", "StackError"]
