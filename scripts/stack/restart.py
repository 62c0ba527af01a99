"""When to restart a service that died: exponential backoff with jitter, reset after a healthy run.

Pure policy (no clock reads, no randomness of its own), so it is unit-tested in milliseconds and
the supervisor that uses it stays a thin loop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Delay before restart number `streak` of a crash streak.

    The first restart after a healthy run waits about `initial` seconds; each further crash in
    the same streak multiplies the wait by `multiplier`, up to `maximum`. The wait is spread by
    ±`jitter` (a fraction) so replicas that died together do not come back in lockstep. A run
    that lasted `healthy_after` seconds or more ends the streak.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    healthy_after: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("need 0 < initial <= maximum")
        if self.multiplier < 1 or not 0 <= self.jitter < 1 or self.healthy_after <= 0:
            raise ValueError("need multiplier >= 1, 0 <= jitter < 1, healthy_after > 0")

    def delay(self, streak: int, rand: float) -> float:
        """Seconds to wait before restart `streak` (1-based); `rand` is uniform in [0, 1)."""
        if streak < 1:
            raise ValueError("streak starts at 1")
        # Cap the exponent so a long streak cannot overflow a float.
        base = min(self.maximum, self.initial * self.multiplier ** min(streak - 1, 64))
        return base * (1 - self.jitter + 2 * self.jitter * rand)

    def next_streak(self, streak: int, ran_for: float) -> int:
        """The streak count after a process that ran `ran_for` seconds died."""
        return 1 if ran_for >= self.healthy_after else streak + 1


@dataclass(slots=True)
class RestartState:
    """One service's restart bookkeeping: the total count (reported) and the current streak."""

    restarts: int = 0
    streak: int = 0
    due_at: float | None = None  # monotonic instant of the scheduled restart, if one is pending

    def schedule(self, policy: RestartPolicy, now: float, ran_for: float, rand: float) -> float:
        """Record a death at `now` after `ran_for` seconds of running; return the chosen delay."""
        self.streak = policy.next_streak(self.streak, ran_for)
        self.restarts += 1
        delay = policy.delay(self.streak, rand)
        self.due_at = now + delay
        return delay

    def due(self, now: float) -> bool:
        return self.due_at is not None and now >= self.due_at
