"""The collector pause around a batch's pure work always ends, and leaves a disabled collector off."""

from __future__ import annotations

import gc

import pytest

from services.segmenter.consumer import _gc_paused


def test_the_collector_is_paused_inside_and_running_after() -> None:
    assert gc.isenabled()
    with _gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_runs_again_after_a_failure() -> None:
    with pytest.raises(ZeroDivisionError), _gc_paused():
        _ = 1 / 0
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    try:
        with _gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
