from __future__ import annotations

import pytest

from cbm.errors import ContractError
from cbm.topics import Topics, partition_of, validate_asset_id

T = Topics("cbm")


def test_topic_layout() -> None:
    assert T.raw("pump-1", "vibration") == "cbm/raw/pump-1/vibration"
    assert T.raw("pump-1", "temperature") == "cbm/raw/pump-1/temperature"
    assert T.raw_filter("vibration") == "cbm/raw/+/vibration"
    assert T.windows(7) == "cbm/windows/p007"
    assert T.features(7) == "cbm/features/p007"
    assert T.predictions("pump-1") == "cbm/predictions/pump-1"
    assert T.alerts("pump-1") == "cbm/alerts/pump-1"
    assert T.deadletter("ingest") == "cbm/deadletter/ingest"
    assert T.status("ingest") == "cbm/status/ingest"
    assert T.parse_raw("cbm/raw/pump-1/temperature") == ("pump-1", "temperature")


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "a b", "-lead", "x" * 65, "ä", "a\x00"])
def test_asset_ids_that_could_inject_a_topic_are_refused(bad: str) -> None:
    with pytest.raises(ContractError) as err:
        T.raw(bad, "vibration")
    assert err.value.reason == "bad_asset_id"


def test_good_asset_ids_pass() -> None:
    for good in ("a", "Pump_01.north-2", "9" * 64):
        assert validate_asset_id(good) == good


@pytest.mark.parametrize(
    "topic", ["cbm/raw/a", "cbm/raw/a/b/vibration", "other/raw/a/vibration", "cbm/raw/a/pressure"]
)
def test_parse_raw_refuses_other_topics(topic: str) -> None:
    with pytest.raises(ContractError):
        T.parse_raw(topic)


def test_partitioning_is_stable_and_spread() -> None:
    # A fixed value: a change here would move assets between partitions.
    assert partition_of("pump-1", 16) == 1738268294 % 16  # zlib.crc32(b"pump-1")
    counts = [0] * 16
    for i in range(1600):
        counts[partition_of(f"asset-{i:04d}", 16)] += 1
    assert min(counts) > 60 and max(counts) < 140


def test_base_topic_must_be_plain() -> None:
    with pytest.raises(ValueError):
        Topics("cbm/#")
