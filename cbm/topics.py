"""Build and parse every MQTT topic of the pipeline; nobody else spells them.

Layout (``base`` defaults to ``cbm``)::

    {base}/raw/{asset}/vibration      device -> ingest, one window per message
    {base}/raw/{asset}/temperature    device -> ingest, one reading per message
    {base}/windows/{partition}        ingest -> features, many windows per message
    {base}/features/{partition}       features -> inference, many vectors per message
    {base}/rul/{partition}            inference -> alerter, many predictions per message
    {base}/predictions/{asset}        inference -> outside consumers, one per message
    {base}/alerts/{asset}             alerter -> outside consumers
    {base}/deadletter/{stage}         any stage, one rejected input per message
    {base}/status/{service}           retained online/offline, with a last will

Asset ids go last (or last but one on raw topics) so a stage subscribes with
one ``+``. Internal hops are keyed by partition, not asset, because one MQTT
message costs far more than one window's bytes: a partition batches the
windows of many assets, and a stable hash keeps one asset in one partition.
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar

from cbm.errors import ContractError

ASSET_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_BASE_PATTERN = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")

T = TypeVar("T")
RawKind = Literal["vibration", "temperature"]
RAW_KINDS: tuple[RawKind, ...] = ("vibration", "temperature")


def validate_asset_id(asset_id: str) -> str:
    """Return ``asset_id`` if it is safe inside a topic, else raise ContractError.

    Letters, digits, ``_ . -``, 1-64 characters, starting with a letter or a
    digit: no ``/``, ``+``, ``#`` or control characters can reach a topic.
    """
    if not ASSET_ID_PATTERN.fullmatch(asset_id):
        raise ContractError("bad_asset_id", f"asset id {asset_id[:80]!r} is not allowed")
    return asset_id


def partition_of(asset_id: str, partitions: int) -> int:
    """Return the partition of an asset: a hash that is stable across processes."""
    return zlib.crc32(asset_id.encode()) % partitions


def by_partition(
    items: Iterable[T], asset_of: Callable[[T], str], partitions: int
) -> list[tuple[int, list[T]]]:
    """Return ``items`` grouped by their asset's partition, partitions ascending, order kept."""
    groups: dict[int, list[T]] = defaultdict(list)
    for item in items:
        groups[partition_of(asset_of(item), partitions)].append(item)
    return sorted(groups.items())


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic builder for one base topic."""

    base: str = "cbm"

    def __post_init__(self) -> None:
        if not _BASE_PATTERN.fullmatch(self.base):
            raise ValueError(f"base topic {self.base!r} must be plain path segments")

    def raw(self, asset_id: str, kind: RawKind) -> str:
        """Return the raw topic a device publishes one kind of data on."""
        return f"{self.base}/raw/{validate_asset_id(asset_id)}/{kind}"

    def raw_filter(self, kind: RawKind) -> str:
        """Return the subscription filter for one kind of raw data of all assets."""
        return f"{self.base}/raw/+/{kind}"

    def parse_raw(self, topic: str) -> tuple[str, RawKind]:
        """Return ``(asset_id, kind)`` of a raw topic; ContractError if it is not one."""
        prefix = f"{self.base}/raw/"
        if not topic.startswith(prefix):
            raise ContractError("bad_topic", f"{topic[:120]!r} is not a raw topic")
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 2 or parts[1] not in RAW_KINDS:
            raise ContractError("bad_topic", f"{topic[:120]!r} is not a raw topic")
        kind: RawKind = "vibration" if parts[1] == "vibration" else "temperature"
        return validate_asset_id(parts[0]), kind

    def windows(self, partition: int) -> str:
        """Return the internal topic of one partition's windows."""
        return f"{self.base}/windows/{partition_name(partition)}"

    def features(self, partition: int) -> str:
        """Return the internal topic of one partition's feature vectors."""
        return f"{self.base}/features/{partition_name(partition)}"

    def rul(self, partition: int) -> str:
        """Return the internal topic of one partition's predictions (inference -> alerter)."""
        return f"{self.base}/rul/{partition_name(partition)}"

    def stage_filter(
        self, stage: Literal["windows", "features", "rul", "predictions", "alerts"]
    ) -> str:
        """Return the subscription filter for every topic of one internal stage."""
        return f"{self.base}/{stage}/+"

    def predictions(self, asset_id: str) -> str:
        """Return the per-asset prediction topic."""
        return f"{self.base}/predictions/{validate_asset_id(asset_id)}"

    def alerts(self, asset_id: str) -> str:
        """Return the per-asset alert topic."""
        return f"{self.base}/alerts/{validate_asset_id(asset_id)}"

    def deadletter(self, stage: str) -> str:
        """Return the dead-letter topic of one stage."""
        return f"{self.base}/deadletter/{_name(stage)}"

    def status(self, service: str) -> str:
        """Return the retained status topic of one service."""
        return f"{self.base}/status/{_name(service)}"


def partition_name(partition: int) -> str:
    """Return the topic segment of a partition (``p000``..``p999``)."""
    if not 0 <= partition < 1000:
        raise ValueError(f"partition {partition} out of range")
    return f"p{partition:03d}"


def _name(name: str) -> str:
    if not _NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid stage or service name")
    return name
