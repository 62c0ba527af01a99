"""The one id module: input ids never collide across users, output ids are deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from shared import ids
from shared.topics import EVENTS

SEP = "\x1f"
texts = st.text(alphabet=st.sampled_from(["a", "b", SEP, "é", ":", "1"]), max_size=6)


def test_two_users_reusing_a_message_id_get_different_ids() -> None:
    assert ids.input_id(EVENTS, "u1", "signup-1") != ids.input_id(EVENTS, "u2", "signup-1")
    assert ids.output_id(ids.input_id(EVENTS, "u1", "signup-1"), "stage") != ids.output_id(
        ids.input_id(EVENTS, "u2", "signup-1"), "stage"
    )


def test_a_separator_in_the_key_cannot_spell_another_pairs_id() -> None:
    """Found by the end-to-end fuzz: ("fz\\x1fa", "b") and ("fz", "a\\x1fb") shared an id."""
    assert ids.input_id(EVENTS, f"fz{SEP}a", "b") != ids.input_id(EVENTS, "fz", f"a{SEP}b")


@given(texts, texts, texts, texts)
def test_input_ids_are_injective(k1: str, m1: str, k2: str, m2: str) -> None:
    if (k1, m1) != (k2, m2):
        assert ids.input_id(EVENTS, k1, m1) != ids.input_id(EVENTS, k2, m2)


def test_a_timer_firing_has_one_id_whatever_the_offset_it_is_given_in() -> None:
    due = datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
    shanghai = due.astimezone(timezone(timedelta(hours=8)))
    assert ids.timer_input_id("idle", "u1", due) == ids.timer_input_id("idle", "u1", shanghai)


def test_dedupe_hashes_are_fixed_size_whatever_the_input() -> None:
    assert len(ids.dedupe_hash("x" * 1_000_000)) == 32
    assert ids.dedupe_hash("a") != ids.dedupe_hash("b")
