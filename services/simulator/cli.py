"""``cbm simulate``: an edge fleet over MQTT, or a run-to-failure file for training."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from cbm.settings import Settings


def register(verbs: Any) -> None:
    """Add the ``simulate`` verb."""
    p: argparse.ArgumentParser = verbs.add_parser(
        "simulate", help="simulate a fleet of degrading machines"
    )
    p.add_argument("--assets", type=int, default=5, help="fleet size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--life-mean-hours", type=float, default=200.0)
    p.add_argument("--healthy-share", type=float, default=0.2)
    p.add_argument("--hours-per-window", type=float, default=1.0)
    p.add_argument("--max-windows", type=int, default=None, help="cap per asset")
    p.add_argument(
        "--speedup",
        type=float,
        default=3600.0,
        help="operating seconds per wall-clock second (3600: 1 h per s)",
    )
    p.add_argument("--format", choices=("binary", "json"), default="binary")
    p.add_argument(
        "--per-device", action="store_true", help="one MQTT client per device (username = asset id)"
    )
    p.add_argument(
        "--credentials", type=Path, help="YAML {asset_id: password} of device credentials"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="write the fleet with ground truth to this .npz file instead of publishing",
    )
    p.add_argument(
        "--write-assets",
        type=Path,
        help="write the fleet's asset register (YAML for the settings) and go on",
    )
    p.add_argument(
        "--record-failures",
        action="store_true",
        help="write a 'failure' maintenance_event row to the configured database for each "
        "asset that runs to failure (labels for `cbm train --from-db` and the backtest)",
    )
    for fault in ("glitch", "nan-burst", "dropout", "duplicate", "late"):
        p.add_argument(
            f"--{fault}", type=float, default=0.0, help=f"probability per window of a {fault} fault"
        )
    p.set_defaults(handler=_simulate)


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from services.simulator.edge import Faults, asset_register  # noqa: PLC0415
    from services.simulator.fleet import make_fleet  # noqa: PLC0415
    from services.simulator.run import publish_fleet, write_file  # noqa: PLC0415

    specs = make_fleet(
        args.assets,
        seed=args.seed,
        life_mean_hours=args.life_mean_hours,
        healthy_share=args.healthy_share,
    )
    if args.write_assets:
        args.write_assets.write_text(
            yaml.safe_dump({"items": asset_register(specs)}, sort_keys=False)
        )
        print(f"asset register written to {args.write_assets}")
    if args.out:
        n = write_file(
            args.out,
            specs,
            seed=args.seed,
            hours_per_window=args.hours_per_window,
            max_windows=args.max_windows,
        )
        print(f"{n} windows of {len(specs)} assets written to {args.out}")
        return 0
    credentials = None
    if args.credentials:
        credentials = {
            str(k): str(v) for k, v in yaml.safe_load(args.credentials.read_text()).items()
        }
    faults = Faults(
        glitch=args.glitch,
        nan_burst=args.nan_burst,
        dropout=args.dropout,
        duplicate=args.duplicate,
        late=args.late,
    )
    publish_fleet(
        settings,
        specs,
        seed=args.seed,
        speedup=args.speedup,
        hours_per_window=args.hours_per_window,
        max_windows=args.max_windows,
        payload_format=args.format,
        faults=faults,
        per_device=args.per_device,
        credentials=credentials,
        record_failures=args.record_failures,
    )
    return 0
