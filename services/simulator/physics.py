"""Simulate a fleet of bearing assets: the simulator core's public face.

Pure: no clock, no I/O. All randomness comes from seeded generators, so one
seed reproduces a whole fleet bit for bit. The parts: ``fleet`` (asset specs),
``degradation`` (defect growth), ``vibration`` (signal synthesis), ``asset``
(one asset through time); this module merges the assets in event-time order.

Ground truth
    ``rul_hours`` is the remaining *operating* time to failure. It falls by
    ``hours_per_window`` for each window the machine runs, stays put while it
    is off, and is exactly 0 on the failure window (where ``severity`` is exactly
    1). Healthy controls (``fault_mode="none"``) never fail: their
    ``rul_hours`` is ``math.inf`` (right-censored); a consumer that needs a
    finite label caps it, e.g. ``min(rul_hours, cap)``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from datetime import datetime

import numpy as np

from services.simulator.asset import AssetSimulator, SimWindow
from services.simulator.fleet import DEFECT_MODES, FAULT_MODES, AssetSpec, FaultMode, make_fleet

__all__ = [
    "DEFECT_MODES",
    "FAULT_MODES",
    "AssetSimulator",
    "AssetSpec",
    "FaultMode",
    "SimWindow",
    "make_fleet",
    "simulate_fleet",
]


def simulate_fleet(
    specs: Sequence[AssetSpec],
    *,
    seed: int,
    start: datetime,
    hours_per_window: float = 1.0,
    max_windows: int | None = None,
) -> Iterator[SimWindow]:
    """Yield every asset's windows merged in event-time order.

    A degrading asset runs until its failure window. Healthy controls run as long
    as any degrading asset does (their last window is no later than the last
    failure). ``max_windows`` caps the windows of each asset; without degrading
    assets it is required. Each asset draws from its own stream spawned from
    ``seed``, so an asset's data does not depend on the others.
    """
    ids = [spec.asset_id for spec in specs]
    if len(set(ids)) != len(ids):
        raise ValueError("asset ids in a fleet must be unique")
    if max_windows is None and not any(spec.degrades for spec in specs):
        raise ValueError("max_windows is required when no asset degrades")
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1, got {max_windows}")
    streams = np.random.SeedSequence(seed).spawn(len(specs))
    simulators = [
        AssetSimulator(
            spec,
            rng=np.random.default_rng(stream),
            start=start,
            hours_per_window=hours_per_window,
        )
        for spec, stream in zip(specs, streams, strict=True)
    ]
    return _merge(simulators, max_windows)


def _merge(simulators: list[AssetSimulator], max_windows: int | None) -> Iterator[SimWindow]:
    """Yield the simulators' windows by (event time, fleet position)."""
    active_degrading = sum(sim.spec.degrades for sim in simulators)
    any_degrading = active_degrading > 0
    last_end: datetime | None = None
    counts = [0] * len(simulators)
    queue = [(sim.next_time, index) for index, sim in enumerate(simulators)]
    heapq.heapify(queue)
    while queue:
        time, index = heapq.heappop(queue)
        sim = simulators[index]
        if (
            not sim.spec.degrades
            and any_degrading
            and active_degrading == 0
            and (last_end is None or time > last_end)
        ):
            continue
        window = sim.next_window()
        counts[index] += 1
        yield window
        if sim.failed or (max_windows is not None and counts[index] >= max_windows):
            if sim.spec.degrades:
                active_degrading -= 1
                last_end = window.time if last_end is None else max(last_end, window.time)
        else:
            heapq.heappush(queue, (sim.next_time, index))
