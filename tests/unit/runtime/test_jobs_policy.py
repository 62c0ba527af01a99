"""The job queue's failure policy and how failures are written down: pure, in milliseconds."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import exc as sa_exc

from shared.runtime.errors import PermanentError
from shared.runtime.failure import failure_text
from shared.runtime.jobs import ClaimedJob, JobKind, JobMetrics, JobOutcome, decide_outcome
from shared.runtime.timers import TimerMetrics


async def _perform(job: ClaimedJob) -> None:
    pass


KIND = JobKind("webhook", _perform, max_attempts=4, backoff_initial=2.0, backoff_max=10.0)


def test_success_is_succeeded_whatever_the_attempt() -> None:
    assert decide_outcome(KIND, 4, None) == JobOutcome("succeeded", 4)


def test_permanent_error_fails_at_once() -> None:
    outcome = decide_outcome(KIND, 1, PermanentError("receiver answered 410", "gone"))
    assert outcome == JobOutcome("failed", 1, "PermanentError: receiver answered 410: gone")


@pytest.mark.parametrize(("attempt", "low", "high"), [(1, 1.0, 2.0), (2, 2.0, 4.0), (3, 4.0, 8.0)])
def test_other_errors_retry_with_jittered_exponential_backoff(attempt: int, low: float, high: float) -> None:
    delays = set()
    for _ in range(200):
        outcome = decide_outcome(KIND, attempt, ConnectionError("refused"))
        assert outcome.state == "retrying" and outcome.error == "ConnectionError: refused"
        assert outcome.retry_in is not None and low <= outcome.retry_in <= high
        delays.add(outcome.retry_in)
    assert len(delays) > 1, "jittered, so replicas do not retry in step"


def test_the_backoff_is_capped() -> None:
    kind = JobKind("webhook", _perform, max_attempts=50, backoff_initial=2.0, backoff_max=10.0)
    outcome = decide_outcome(kind, 30, TimeoutError())
    assert outcome.retry_in is not None and 5.0 <= outcome.retry_in <= 10.0


def test_the_last_attempt_fails_for_good() -> None:
    assert decide_outcome(KIND, 4, ValueError("500 from receiver")).state == "failed"
    assert decide_outcome(KIND, 5, ValueError("500 from receiver")).state == "failed"


def test_failure_text_masks_credentials_and_is_bounded() -> None:
    text = failure_text(
        ConnectionError(
            "cannot reach postgresql://ops:hunter2@db:5432/x with password=hunter2, token: abc123"
        )
    )
    assert "hunter2" not in text and "abc123" not in text
    assert text.startswith("ConnectionError: cannot reach postgresql://***@db:5432/x")
    assert failure_text(ValueError("Authorization: Bearer abc.def.ghi")) == "ValueError: Authorization: ***"
    long = failure_text(ValueError("x" * 5000))
    assert len(long) == 500 and long.endswith("…")
    assert failure_text(ValueError("two\n  lines")) == "ValueError: two lines"


def test_failure_text_leaves_out_sql_parameters() -> None:
    error = sa_exc.IntegrityError(
        "INSERT INTO t VALUES ($1)", {"email": "user@example.com"}, ValueError("dup")
    )
    assert failure_text(error) == "ValueError: dup"


def test_metrics_are_registered_once_per_service_and_labelled_by_kind_only() -> None:
    registry = CollectorRegistry()
    assert JobMetrics.create(registry, "notifier") is JobMetrics.create(registry, "notifier")
    assert TimerMetrics.create(registry, "notifier") is TimerMetrics.create(registry, "notifier")
    metrics = JobMetrics.create(registry, "notifier")
    metrics.succeeded.labels(service="notifier", kind="webhook").inc()
    metrics.refresh(["webhook", "email"], {"webhook": (3, 1, 12.5)})
    samples = {(s.name, tuple(sorted(s.labels))) for m in registry.collect() for s in m.samples}
    assert all(labels in {("kind", "service"), ("kind", "le", "service")} for _, labels in samples), samples
    assert registry.get_sample_value("userops_jobs_queued", {"service": "notifier", "kind": "webhook"}) == 3
    assert (
        registry.get_sample_value("userops_jobs_oldest_due_seconds", {"service": "notifier", "kind": "email"})
        == 0
    )
