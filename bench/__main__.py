"""Run every benchmark and write a JSON report: ``python -m bench [--smoke]``.

``--smoke`` runs each at a size that proves it works in a minute (CI); the
full size gives the figures quoted in the issues and README.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from pathlib import Path
from typing import Any

# module -> (full-size argv, smoke-size argv)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "bench.bench_ingest": (["--windows", "20000"], ["--windows", "300", "--rounds", "1"]),
    "bench.bench_features_compute": (["--windows", "20000"], ["--windows", "400"]),
    "bench.bench_features_stage": (["--windows", "20000"], ["--windows", "500"]),
    "bench.bench_model": (
        ["--sizes", "1,100,1000,10000"],
        ["--sizes", "1,100,1000", "--repeats", "3"],
    ),
    "bench.bench_pipeline": (
        [],
        [
            "--assets",
            "50",
            "--rates",
            "50",
            "--step-s",
            "5",
            "--hop-windows",
            "500",
            "--drain-windows",
            "500",
        ],
    ),
    "bench.bench_dashboards": (
        ["--assets", "100", "--days", "30"],
        ["--assets", "10", "--days", "1"],
    ),
}


def main() -> None:
    """Run the benchmarks and write reports/bench.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--only", nargs="*", help="module names to run")
    parser.add_argument("--report", type=Path, default=Path("reports/bench.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    report: dict[str, Any] = {"smoke": args.smoke}
    for name, (full, smoke) in BENCHMARKS.items():
        if args.only and name not in args.only and name.split(".")[-1] not in args.only:
            continue
        print(f"== {name}")
        module = importlib.import_module(name)
        report[name.split(".")[-1]] = module.main(smoke if args.smoke else full)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))
    print(f"report written to {args.report}")


if __name__ == "__main__":
    main()
