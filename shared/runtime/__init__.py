"""The consumer runtime every consumer service runs on (DESIGN.md §3).

- `runner.ConsumerRunner`: Kafka → handler in ONE PostgreSQL transaction per batch, with the
  dedupe keys recorded in it; offsets committed (offset + 1) only after that transaction commits.
- `outbox`: output events written in the handler's transaction, relayed to Kafka afterwards.
- `timers`: durable `due_at` rows claimed with `FOR UPDATE SKIP LOCKED`; attempts, backoff, a dead state.
- `jobs`: effects outside the database (webhooks, email), enqueued in the handler's transaction,
  performed outside any transaction under a lease; failed jobs are listed and replayed.
- `service`: the builder that composes all of the above for a consumer service.
- `migrations`: one Alembic history per service database, run at start.
"""
