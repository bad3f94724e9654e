"""The ``cbm`` command: the composition root above ``cbm`` and ``services``.

Stages are imported lazily so ``cbm run ingest`` loads only what ingest needs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cbm import logs
from cbm.errors import CbmError
from cbm.settings import Settings, load_settings
from services.argtypes import fleet_size, positive

log = logging.getLogger("cbm")

# stage name -> "module:factory" of a callable (settings) -> Stage
STAGES = {
    "ingest": "services.ingest.stage:IngestStage",
    "features": "services.features.stage:FeaturesStage",
    "inference": "services.inference.stage:InferenceStage",
    "alerter": "services.alerter.stage:AlerterStage",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        settings = load_settings(args.config)
        logs.configure(settings.worker.log_level, json=settings.worker.json_logs)
        handler: Callable[[Settings, argparse.Namespace], int] = args.handler
        return handler(settings, args)
    except CbmError as exc:
        print(f"cbm: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every `cbm` verb (each verb's handler is set as `handler`)."""
    parser = argparse.ArgumentParser(prog="cbm", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="settings file (default: $CBM_CONFIG, else built-in defaults)",
    )
    verbs = parser.add_subparsers(title="commands")

    db = verbs.add_parser("db", help="database administration").add_subparsers(title="db")
    migrate = db.add_parser("migrate", help="apply pending SQL migrations")
    migrate.set_defaults(handler=_migrate)

    run = verbs.add_parser("run", help="run one pipeline worker")
    run.add_argument("stage", choices=sorted(STAGES))
    run.set_defaults(handler=_run)

    up = verbs.add_parser("up", help="run the four workers under a supervisor")
    up.add_argument("--logs", type=Path, default=None, help="directory for worker logs")
    up.set_defaults(handler=_up)

    demo = verbs.add_parser("demo", help="the whole pipeline on a simulated fleet")
    demo.add_argument("--assets", type=fleet_size, default=6)
    demo.add_argument("--minutes", type=positive, default=10.0, help="stop after this long")
    demo.set_defaults(handler=_demo)

    config = verbs.add_parser("config", help="print the effective settings (secrets hidden)")
    config.set_defaults(handler=_config)

    from services.simulator.cli import register as register_simulator  # noqa: PLC0415

    register_simulator(verbs)
    importlib.import_module("services.mqttadmin.cli").register(verbs)
    importlib.import_module("services.grafana.cli").register(verbs)
    importlib.import_module("services.alerter.cli").register(verbs)
    importlib.import_module("services.training.cli").register(verbs)
    importlib.import_module("services.training.shadow_cli").register(verbs)
    importlib.import_module("services.prognostics.cli").register(verbs)
    return parser


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from cbm.db import connect  # noqa: PLC0415 - keep start-up light
    from cbm.migrate import migrate  # noqa: PLC0415

    with connect(settings, autocommit=True) as conn:
        applied = migrate(conn)
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from cbm.worker import Worker  # noqa: PLC0415

    stage = load_stage(args.stage, settings)
    worker: Worker[Any] = Worker(settings, stage)
    worker.install_signal_handlers()
    worker.run()
    return 0


def _up(_settings: Settings, args: argparse.Namespace) -> int:
    import os  # noqa: PLC0415

    from services.supervisor import run_forever  # noqa: PLC0415

    env = dict(os.environ)
    if args.config is not None:
        env["CBM_CONFIG"] = str(args.config.resolve())
    return run_forever(env, log_dir=args.logs)


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    import os  # noqa: PLC0415

    from services.demo import run_demo  # noqa: PLC0415

    configured = args.config is not None or any(
        k in os.environ for k in ("CBM_CONFIG", "CBM_MQTT__HOST", "CBM_DATABASE__URL")
    )
    return run_demo(settings, configured=configured, assets=args.assets, minutes=args.minutes)


def load_stage(name: str, settings: Settings) -> Any:
    """Import a stage lazily and build it from the settings."""
    module_name, _, factory = STAGES[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, factory)(settings)


def _config(settings: Settings, _args: argparse.Namespace) -> int:
    import yaml  # noqa: PLC0415

    print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
