"""The ``cbm train``, ``evaluate`` and ``retrain`` verbs; ``services/cli.py`` calls ``register``.

The verbs' arguments are in :mod:`services.training.arguments`; here are the
handlers that turn them into configs and run. Everything but the defaults is
imported inside the handlers, so registering the verbs costs nothing (no
numpy, let alone TensorFlow).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cbm.errors import SettingsError
from cbm.settings import Settings
from services.argtypes import login_name
from services.training import arguments, defaults

if TYPE_CHECKING:
    import psycopg

    from services.training.history import HistoryConfig


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train``, ``evaluate`` and ``retrain`` verbs to the ``cbm`` command."""
    arguments.add_train(subparsers).set_defaults(handler=run_train)
    arguments.add_evaluate(subparsers).set_defaults(handler=run_evaluate)
    arguments.add_retrain(subparsers).set_defaults(handler=run_retrain)


def history_config(args: argparse.Namespace) -> HistoryConfig | None:
    """Return the history options of ``args``; None without ``--from-db``."""
    from services.training.history import HistoryConfig  # noqa: PLC0415

    if not args.from_db:
        if args.with_simulated or args.speedup is not None or args.include_censored:
            raise SettingsError(
                "--with-simulated, --speedup and --include-censored go with --from-db"
            )
        return None
    speedup = 1.0 if args.speedup is None else args.speedup
    return HistoryConfig(
        hours_per_second=speedup / 3600.0,
        include_censored=args.include_censored,
        with_simulated=args.with_simulated,
    )


def _connector(settings: Settings) -> Callable[[], psycopg.Connection[tuple[object, ...]]]:
    """Return a connect function for the configured database (bounded wait, autocommit)."""
    import psycopg  # noqa: PLC0415

    from cbm.db import conninfo  # noqa: PLC0415
    from services.training.retrain import CONNECT_TIMEOUT_S  # noqa: PLC0415

    def connect() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            conninfo(settings), connect_timeout=CONNECT_TIMEOUT_S, autocommit=True
        )

    return connect


def run_train(settings: Settings, args: argparse.Namespace) -> int:
    """Train a model as the arguments say; return the exit status."""
    from services.inference.model import CURRENT_FILE  # noqa: PLC0415
    from services.training.dataset import FleetConfig  # noqa: PLC0415
    from services.training.network import NetworkConfig  # noqa: PLC0415
    from services.training.preparation import TrainConfig  # noqa: PLC0415
    from services.training.train import train  # noqa: PLC0415

    models_dir: Path = args.models_dir or settings.inference.models_dir
    config = TrainConfig(
        fleet=FleetConfig(
            n_assets=args.assets,
            seed=args.seed,
            life_mean_hours=args.life_mean_hours,
            healthy_share=args.healthy_share,
        ),
        fleet_file=args.fleet,
        history=history_config(args),
        lookback=args.lookback,
        cap_hours=args.cap_hours,
        coverage=args.coverage,
        network=NetworkConfig(max_epochs=args.epochs, units=args.units, seed=args.network_seed),
    )
    train(
        config,
        models_dir=models_dir,
        features=settings.features,
        make_current=args.promote or not (models_dir / CURRENT_FILE).exists(),
        verbose=args.progress,
        out=sys.stdout,
        connect=_connector(settings) if args.from_db else None,
    )
    return 0


def run_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    """Evaluate a model as the arguments say; return the exit status."""
    from services.training.evaluate import evaluate  # noqa: PLC0415

    evaluate(
        args.models_dir or settings.inference.models_dir,
        version=args.version or settings.inference.model_version,
        report_dir=args.report_dir,
        features=settings.features,
        verbose=args.progress,
        plot=not args.no_plot,
        out=sys.stdout,
    )
    return 0


def run_retrain(settings: Settings, args: argparse.Namespace) -> int:
    """Retrain and decide as the arguments say; return the exit status (0 promoted or not)."""
    from services.training.dataset import FleetConfig  # noqa: PLC0415
    from services.training.network import NetworkConfig  # noqa: PLC0415
    from services.training.preparation import TrainConfig  # noqa: PLC0415
    from services.training.promotion import Metric  # noqa: PLC0415
    from services.training.retrain import RetrainConfig, retrain  # noqa: PLC0415

    if settings.inference.model_version is not None:
        print(
            f"note: inference.model_version pins {settings.inference.model_version}; "
            "a promotion moves CURRENT but the inference stage keeps the pinned model"
        )
    config = RetrainConfig(
        train=TrainConfig(
            fleet=FleetConfig(
                n_assets=defaults.FLEET_ASSETS if args.simulate is None else args.simulate,
                seed=args.seed,
            ),
            history=history_config(args),
            network=NetworkConfig(max_epochs=args.epochs),
        ),
        metric=Metric(args.metric),
        shuffled_target=args.shuffled_target,
        by=args.by or login_name(),
        shadow=args.shadow,
    )
    retrain(
        config,
        models_dir=args.models_dir or settings.inference.models_dir,
        features=settings.features,
        connect=_connector(settings),
        verbose=args.progress,
        out=sys.stdout,
    )
    return 0
