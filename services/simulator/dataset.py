"""Write simulated windows to one compressed ``.npz`` file and read them back exactly.

Layout (one row per window, in the order written):

- ``asset_id``, ``fault_mode``: unicode strings;
- ``time``: int64 microseconds since the Unix epoch (UTC), the event time;
- ``seq``: int64; ``running``, ``failed``: bool;
- ``sample_rate_hz``, ``temperature_c``, ``shaft_hz``, ``rul_hours``, ``severity``,
  ``operating_hours``: float64 (``rul_hours`` is ``inf`` for healthy controls);
- ``samples``: float32, shape ``(n_windows, max_length)``, zero-padded on the
  right when windows differ in length; ``n_samples``: int64 true lengths;
- ``meta_json``: a JSON document with the format version, the fleet specs and
  the caller's ``meta`` (seed, start, hours per window...).

Everything is stored without pickle, so the file is safe to load from anywhere.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from cbm.bearing import BearingGeometry
from cbm.messages import from_micros, to_micros
from services.simulator.physics import AssetSpec, FaultMode, SimWindow

FORMAT: Final = "cbm-sim-fleet"
FORMAT_VERSION: Final = 1


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FleetData:
    """Hold a simulated fleet as columns: one row per window, plus the specs.

    Compared by identity: it holds arrays.
    """

    asset_id: npt.NDArray[np.str_]
    time: npt.NDArray[np.int64]
    seq: npt.NDArray[np.int64]
    samples: npt.NDArray[np.float32]
    n_samples: npt.NDArray[np.int64]
    sample_rate_hz: npt.NDArray[np.float64]
    temperature_c: npt.NDArray[np.float64]
    shaft_hz: npt.NDArray[np.float64]
    running: npt.NDArray[np.bool_]
    rul_hours: npt.NDArray[np.float64]
    severity: npt.NDArray[np.float64]
    fault_mode: npt.NDArray[np.str_]
    failed: npt.NDArray[np.bool_]
    operating_hours: npt.NDArray[np.float64]
    specs: tuple[AssetSpec, ...]
    meta: dict[str, Any]

    def __len__(self) -> int:
        return int(self.seq.size)

    def event_time(self, index: int) -> datetime:
        """Return the event time of row ``index`` as an aware UTC datetime."""
        return from_micros(int(self.time[index]))

    def window(self, index: int) -> SimWindow:
        """Rebuild row ``index`` as the window it was written from."""
        return SimWindow(
            asset_id=str(self.asset_id[index]),
            time=self.event_time(index),
            seq=int(self.seq[index]),
            samples=self.samples[index, : int(self.n_samples[index])].copy(),
            sample_rate_hz=float(self.sample_rate_hz[index]),
            temperature_c=float(self.temperature_c[index]),
            shaft_hz=float(self.shaft_hz[index]),
            running=bool(self.running[index]),
            rul_hours=float(self.rul_hours[index]),
            severity=float(self.severity[index]),
            fault_mode=cast(FaultMode, str(self.fault_mode[index])),
            failed=bool(self.failed[index]),
            operating_hours=float(self.operating_hours[index]),
        )

    def windows(self) -> Iterator[SimWindow]:
        """Yield every row as a window, in file order."""
        for index in range(len(self)):
            yield self.window(index)


def write_fleet(
    path: Path,
    windows: Iterable[SimWindow],
    *,
    specs: Iterable[AssetSpec],
    meta: Mapping[str, Any],
) -> int:
    """Write ``windows`` and the fleet's ``specs`` to ``path``; return the window count.

    ``meta`` must be JSON-serialisable; put the seed and the simulation settings
    there. The file appears atomically: a crash leaves either the old file or
    the whole new one.
    """
    spec_list = list(specs)
    known = {spec.asset_id for spec in spec_list}
    rows = list(windows)
    for row in rows:
        if row.asset_id not in known:
            raise ValueError(f"window of asset {row.asset_id!r} has no spec")
        if row.time.tzinfo is None:
            raise ValueError(f"window {row.asset_id}/{row.seq} has a naive time")
    lengths = np.array([row.samples.size for row in rows], dtype=np.int64)
    width = int(lengths.max()) if rows else 0
    samples = np.zeros((len(rows), width), dtype=np.float32)
    for index, row in enumerate(rows):
        samples[index, : row.samples.size] = row.samples
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "specs": [_spec_to_json(spec) for spec in spec_list],
        "meta": dict(meta),
    }
    arrays: dict[str, Any] = {
        "asset_id": np.array([row.asset_id for row in rows], dtype="<U64"),
        "time": np.array([to_micros(row.time) for row in rows], np.int64),
        "seq": np.array([row.seq for row in rows], dtype=np.int64),
        "samples": samples,
        "n_samples": lengths,
        "sample_rate_hz": _floats(row.sample_rate_hz for row in rows),
        "temperature_c": _floats(row.temperature_c for row in rows),
        "shaft_hz": _floats(row.shaft_hz for row in rows),
        "running": np.array([row.running for row in rows], dtype=np.bool_),
        "rul_hours": _floats(row.rul_hours for row in rows),
        "severity": _floats(row.severity for row in rows),
        "fault_mode": np.array([row.fault_mode for row in rows], dtype="<U8"),
        "failed": np.array([row.failed for row in rows], dtype=np.bool_),
        "operating_hours": _floats(row.operating_hours for row in rows),
        "meta_json": np.array(json.dumps(document, allow_nan=False)),
    }
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    # Through an open file: given a name, numpy would append ".npz" to it.
    try:
        with partial.open("wb") as handle:
            np.savez_compressed(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return len(rows)


def read_fleet(path: Path) -> FleetData:
    """Read a file written by ``write_fleet``."""
    with np.load(Path(path), allow_pickle=False) as archive:
        document = json.loads(str(archive["meta_json"]))
        if document.get("format") != FORMAT or document.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} is not a {FORMAT} v{FORMAT_VERSION} file: "
                f"{document.get('format')!r} v{document.get('version')!r}"
            )
        return FleetData(
            asset_id=archive["asset_id"],
            time=archive["time"],
            seq=archive["seq"],
            samples=archive["samples"],
            n_samples=archive["n_samples"],
            sample_rate_hz=archive["sample_rate_hz"],
            temperature_c=archive["temperature_c"],
            shaft_hz=archive["shaft_hz"],
            running=archive["running"],
            rul_hours=archive["rul_hours"],
            severity=archive["severity"],
            fault_mode=archive["fault_mode"],
            failed=archive["failed"],
            operating_hours=archive["operating_hours"],
            specs=tuple(_spec_from_json(item) for item in document["specs"]),
            meta=document["meta"],
        )


def _floats(values: Iterable[float]) -> npt.NDArray[np.float64]:
    """Return ``values`` as a float64 array."""
    return np.fromiter(values, dtype=np.float64)


def _spec_to_json(spec: AssetSpec) -> dict[str, Any]:
    """Return ``spec`` as a JSON-ready dict; an infinite life becomes null."""
    fields = asdict(spec)
    if math.isinf(spec.life_hours):
        fields["life_hours"] = None
    return fields


def _spec_from_json(fields: Mapping[str, Any]) -> AssetSpec:
    """Rebuild a spec from ``_spec_to_json`` output."""
    values = dict(fields)
    values["geometry"] = BearingGeometry(**values["geometry"])
    if values["life_hours"] is None:
        values["life_hours"] = math.inf
    return AssetSpec(**values)
