"""Token buckets per write key (domain/rate_limit.py)."""

from __future__ import annotations

from services.ingest.domain.rate_limit import RateLimiter, TokenBucket


def test_a_full_bucket_admits_the_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    assert bucket.take(20, now=0.0) == 0.0
    assert bucket.take(1, now=0.0) == 0.1


def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    bucket.take(20, now=0.0)
    assert bucket.take(5, now=0.5) == 0.0
    assert bucket.take(1, now=0.5) > 0
    assert bucket.take(20, now=100.0) == 0.0  # capped at the burst, not 1000 tokens


def test_a_batch_bigger_than_the_burst_is_admitted_from_a_full_bucket_and_paid_for() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    assert bucket.take(50, now=0.0) == 0.0
    assert bucket.take(1, now=1.0) > 0  # 20 - 50 + 10 = -20 tokens: still in debt
    assert bucket.take(1, now=4.0) == 0.0


def test_time_going_backwards_does_not_mint_tokens() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    bucket.take(20, now=5.0)
    assert bucket.take(1, now=4.0) > 0
    assert bucket.take(1, now=5.0) > 0


def test_the_limiter_keeps_one_bucket_per_source_and_rounds_retry_after_up() -> None:
    limiter = RateLimiter(events_per_second=2, burst=4)
    assert limiter.retry_after("a", 4, now=0.0) == 0
    assert limiter.retry_after("a", 1, now=0.0) == 1
    assert limiter.retry_after("b", 4, now=0.0) == 0
    assert limiter.retry_after("a", 4, now=0.1) == 2  # needs 3.8 more tokens at 2/s
