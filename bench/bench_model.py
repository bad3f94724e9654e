"""RUL model serving cost: LiteRT predictions per asset at several batch sizes, and memory.

Times :meth:`services.inference.model.RulModel.predict` (scaling, LiteRT
invoke, quantiles to hours with the interval) on sequences drawn around the
training scaler, for batch sizes 1, 100, 1,000 and 10,000 (median of repeats,
wall time). Then starts a fresh Python process that imports only the serving
module and loads the model, and reports its resident memory (VmRSS) and load
time: what an inference worker pays before its first message.
Run: ``python -m bench.bench_model [--sizes 1,100,1000,10000] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.inference.model import RulModel

GOAL_US_PER_ASSET = 20.0

_CHILD = """
import json, sys, time
started = time.perf_counter()
import numpy as np
from services.inference.model import RulModel
model = RulModel.load(sys.argv[1], sys.argv[2])
n, f = model.lookback, len(model.feature_names)
model.predict(np.tile(model.meta.scaler_mean, (1, n, 1)))
seconds = time.perf_counter() - started
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))
print(json.dumps({"rss_mb": rss / 1024, "load_s": seconds,
                  "tensorflow_imported": "tensorflow" in sys.modules}))
"""


def time_batch(model: RulModel, size: int, repeats: int, seed: int) -> float:
    """Return the median wall seconds of one ``predict`` call on ``size`` sequences."""
    rng = np.random.default_rng(seed)
    meta = model.meta
    shape = (size, model.lookback, len(model.feature_names))
    sequences = meta.scaler_mean + meta.scaler_std * rng.standard_normal(shape)
    model.predict(sequences)  # warm up: the interpreter re-plans for a new batch size
    loops = max(1, 2000 // size)  # enough calls per repeat that the clock can see them
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(loops):
            model.predict(sequences)
        samples.append((time.perf_counter() - started) / loops)
    return statistics.median(samples)


def child_memory(models_dir: Path, version: str) -> dict[str, Any]:
    """Return RSS and load time of a fresh process that loads only the serving model."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(models_dir), version],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--version", default=None, help="default: the CURRENT model")
    parser.add_argument("--sizes", default="1,100,1000,10000", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    model = RulModel.load(args.models_dir, args.version)
    print(f"model {model.version}: lookback {model.lookback} x {len(model.feature_names)} features")
    print(f"{'batch':>7} {'µs/asset':>10} {'predictions/s':>14} {'ms/call':>9}")
    batches: dict[str, Any] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        seconds = time_batch(model, size, args.repeats, seed=size)
        per_asset_us = seconds / size * 1e6
        batches[str(size)] = {
            "us_per_asset": per_asset_us,
            "predictions_per_s": size / seconds,
            "ms_per_call": seconds * 1e3,
        }
        print(f"{size:>7} {per_asset_us:>10.2f} {size / seconds:>14,.0f} {seconds * 1e3:>9.3f}")
    memory = child_memory(args.models_dir, model.version)
    print(
        f"a process that loaded only RulModel: {memory['rss_mb']:.0f} MB RSS, "
        f"{memory['load_s']:.2f} s to import, load and predict once "
        f"(TensorFlow imported: {memory['tensorflow_imported']})"
    )
    largest = batches[max(batches, key=int)]["us_per_asset"]
    print(f"goal ≤ {GOAL_US_PER_ASSET:g} µs per asset batched: {largest:.2f} µs")
    return {
        "model_version": model.version,
        "batches": batches,
        "child_process": memory,
        "goal_us_per_asset": GOAL_US_PER_ASSET,
        "goal_met": largest <= GOAL_US_PER_ASSET,
    }


if __name__ == "__main__":
    main()
