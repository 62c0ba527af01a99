"""The default Kafka partitioner, reimplemented for speed (shared/kafka.py)."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from shared.kafka import murmur2, partition_for


def signed(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


@pytest.mark.parametrize(
    ("key", "expected"),
    [  # the Java client's own test vectors (org.apache.kafka.common.utils.UtilsTest)
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert signed(murmur2(key)) == expected


@given(st.binary(max_size=80), st.integers(min_value=1, max_value=64))
def test_partitions_match_aiokafkas_default_partitioner(key: bytes, partitions: int) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)
    all_partitions = list(range(partitions))
    assert partition_for(key, partitions) == DefaultPartitioner()(key, all_partitions, all_partitions)
