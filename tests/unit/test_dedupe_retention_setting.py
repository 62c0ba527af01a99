"""Every consumer's dedupe retention setting: ISO-8601, seconds, or forever; anything else stops it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from services.segmenter.settings import SegmenterSettings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("P7D", timedelta(days=7)), ("86400", timedelta(days=1)), ("forever", None), (" Forever ", None)],
)
def test_retention_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: timedelta | None
) -> None:
    monkeypatch.setenv("USEROPS_ADMIN_TOKEN", "t")
    monkeypatch.setenv("USEROPS_SEGMENTER_DEDUPE_RETENTION", raw)
    assert SegmenterSettings().segmenter_dedupe_retention == expected


def test_a_bad_retention_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USEROPS_ADMIN_TOKEN", "t")
    monkeypatch.setenv("USEROPS_SEGMENTER_DEDUPE_RETENTION", "a week")
    with pytest.raises(ValidationError, match="segmenter_dedupe_retention"):
        SegmenterSettings()
