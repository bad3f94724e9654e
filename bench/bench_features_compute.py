"""Feature computation cost per window: the batched core against a per-window loop.

Times :func:`services.features.extract.extract` over batches of random
1,000-sample float32 windows (what the edge sends) and, for comparison, the
straightforward per-window version of the same kinds of features built on
``scipy.stats`` and one FFT call per window. Wall time is the median over
repeats (``time.perf_counter``); CPU time is reported too because other work
on a shared 2-core machine inflates wall time but not CPU time.
Run: ``python -m bench.bench_features_compute [--windows 2000] [--batch 200]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal
import scipy.stats
from numpy.typing import NDArray

from cbm.bearing import BearingGeometry
from services.features.extract import FEATURE_NAMES, extract, orders_array

GOAL_US_PER_WINDOW = 50.0
SHAFT_HZ = 25.0
BAND_HZ = (1200.0, 2400.0)


def make_windows(count: int, n: int, dtype: str, seed: int) -> NDArray[np.floating]:
    """Return ``count`` noisy windows of ``n`` samples with a little structure in them."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 5000.0
    tone = np.sin(2 * np.pi * 89.6 * t) * rng.uniform(0.0, 0.5, size=(count, 1))
    return (rng.standard_normal((count, n)) + tone).astype(dtype)


def time_batched(
    windows: NDArray[np.floating], batch: int, rate: float, repeats: int
) -> tuple[float, float]:
    """Return median wall and CPU seconds per window for ``extract`` over all batches."""
    orders = orders_array(BearingGeometry().orders())
    shaft = np.full(batch, SHAFT_HZ)
    wall: list[float] = []
    cpu: list[float] = []
    extract(
        windows[:batch],
        sample_rate_hz=rate,
        shaft_hz=shaft[: len(windows[:batch])],
        fault_orders=orders,
        resonance_band_hz=BAND_HZ,
    )
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(windows), batch):
            chunk = windows[start : start + batch]
            extract(
                chunk,
                sample_rate_hz=rate,
                shaft_hz=shaft[: len(chunk)],
                fault_orders=orders,
                resonance_band_hz=BAND_HZ,
            )
        wall.append((time.perf_counter() - w0) / len(windows))
        cpu.append((time.process_time() - c0) / len(windows))
    return statistics.median(wall), statistics.median(cpu)


def reference_window(x: NDArray[np.floating], rate: float) -> list[float]:
    """Return comparable features of one window the per-window way (the baseline)."""
    x = np.asarray(x, dtype=np.float64)
    d = x - x.mean()
    rms = float(np.sqrt(np.mean(d * d)))
    peak = float(np.max(np.abs(d)))
    kurt = float(scipy.stats.kurtosis(x))
    skew = float(scipy.stats.skew(x))
    spectrum = np.abs(scipy.fft.rfft(d * scipy.signal.windows.hann(len(d), sym=False)))
    freqs = scipy.fft.rfftfreq(len(d), 1 / rate)
    in_band = (freqs >= 100) & (freqs < 500)
    envelope = np.abs(scipy.signal.hilbert(d))
    env_spectrum = np.abs(scipy.fft.rfft(envelope - envelope.mean()))
    bpfo = SHAFT_HZ * 3.5848
    near = np.abs(freqs - bpfo) <= 5.0
    return [
        rms,
        peak,
        peak / rms,
        kurt,
        skew,
        float(np.sum(spectrum[in_band] ** 2)),
        float(freqs[np.argmax(spectrum[1:]) + 1]),
        float(env_spectrum[near].max()),
    ]


def time_reference(windows: NDArray[np.floating], rate: float, repeats: int) -> float:
    """Return median wall seconds per window of the per-window baseline."""
    runs: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        for row in windows:
            reference_window(row, rate)
        runs.append((time.perf_counter() - started) / len(windows))
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the figures and return them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2000, help="windows per repeat")
    parser.add_argument("--batch", type=int, default=200, help="windows per extract call")
    parser.add_argument("--samples", type=int, default=1000, help="samples per window")
    parser.add_argument("--rate", type=float, default=5000.0, help="sample rate in Hz")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument(
        "--reference-windows",
        type=int,
        default=200,
        help="windows for the slow per-window baseline",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    windows = make_windows(args.windows, args.samples, args.dtype, args.seed)
    wall, cpu = time_batched(windows, args.batch, args.rate, args.repeats)
    reference_count = max(1, min(args.reference_windows, args.windows))
    reference = time_reference(windows[:reference_count], args.rate, max(1, args.repeats // 3))

    result: dict[str, Any] = {
        "windows": args.windows,
        "batch": args.batch,
        "samples": args.samples,
        "dtype": args.dtype,
        "features": len(FEATURE_NAMES),
        "repeats": args.repeats,
        "us_per_window": wall * 1e6,
        "cpu_us_per_window": cpu * 1e6,
        "windows_per_s": 1.0 / wall,
        "reference_us_per_window": reference * 1e6,
        "reference_windows": reference_count,
        "speedup": reference / wall,
        "goal_us_per_window": GOAL_US_PER_WINDOW,
        "meets_goal": wall * 1e6 <= GOAL_US_PER_WINDOW,
    }
    print(
        f"extract, {args.samples}-sample {args.dtype} windows, batches of {args.batch}, "
        f"median of {args.repeats} x {args.windows} windows:"
    )
    print(
        f"  {result['us_per_window']:8.1f} us/window wall   "
        f"{result['cpu_us_per_window']:8.1f} us/window CPU   "
        f"{result['windows_per_s']:10.0f} windows/s"
    )
    print(f"per-window scipy.stats + FFT reference ({reference_count} windows):")
    print(
        f"  {result['reference_us_per_window']:8.1f} us/window   speed-up x{result['speedup']:.0f}"
    )
    verdict = "meets" if result["meets_goal"] else "misses"
    print(f"goal <= {GOAL_US_PER_WINDOW:.0f} us/window: {verdict}")
    return result


if __name__ == "__main__":
    main()
