"""The ``cbm train``, ``evaluate`` and ``retrain`` verbs; ``services/cli.py`` calls ``register``.

Everything but the defaults is imported inside the handlers, so registering
the verbs costs nothing (no numpy, let alone TensorFlow).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cbm.errors import SettingsError
from cbm.settings import Settings
from services.training import defaults

if TYPE_CHECKING:
    import psycopg

    from services.training.history import HistoryConfig

DEFAULT_REPORT_DIR = Path("reports")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train``, ``evaluate`` and ``retrain`` verbs to the ``cbm`` command."""
    train = subparsers.add_parser(
        "train",
        help="train, calibrate and version the RUL model (default args rebuild the shipped one)",
    )
    train.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="where <version>/ and CURRENT go (default: the inference.models_dir setting)",
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument(
        "--fleet",
        type=Path,
        default=None,
        help="a fleet file written by the simulator, instead of simulating",
    )
    source.add_argument(
        "--assets",
        type=int,
        default=defaults.FLEET_ASSETS,
        help="simulated assets (default: %(default)s)",
    )
    source.add_argument(
        "--from-db",
        action="store_true",
        help="train on the database's history: feature_vector rows labelled by the "
        "recorded failures of maintenance_event",
    )
    _add_history_options(train)
    train.add_argument(
        "--seed",
        type=int,
        default=defaults.FLEET_SEED,
        help="simulation seed (default: %(default)s)",
    )
    train.add_argument(
        "--life-mean-hours",
        type=float,
        default=defaults.LIFE_MEAN_HOURS,
        help="mean operating life of a simulated asset (default: %(default)s)",
    )
    train.add_argument(
        "--healthy-share",
        type=float,
        default=defaults.HEALTHY_SHARE,
        help="share of never-failing assets (default: %(default)s)",
    )
    train.add_argument(
        "--cap-hours",
        type=float,
        default=defaults.CAP_HOURS,
        help="RUL target cap in hours (default: %(default)s)",
    )
    train.add_argument(
        "--lookback",
        type=int,
        default=defaults.LOOKBACK,
        help="feature vectors per sequence (default: %(default)s)",
    )
    train.add_argument(
        "--coverage",
        type=float,
        default=defaults.COVERAGE,
        help="target coverage of the interval (default: %(default)s)",
    )
    train.add_argument(
        "--epochs",
        type=int,
        default=defaults.MAX_EPOCHS,
        help="maximum epochs; early stopping ends sooner (default: %(default)s)",
    )
    train.add_argument(
        "--units", type=int, default=defaults.UNITS, help="LSTM units (default: %(default)s)"
    )
    train.add_argument(
        "--network-seed",
        type=int,
        default=defaults.NETWORK_SEED,
        help="weight initialisation and shuffling seed (default: %(default)s)",
    )
    train.add_argument(
        "--promote",
        action="store_true",
        help="point CURRENT at the new model (done anyway when there is no CURRENT yet); "
        "a running inference stage then switches to it",
    )
    train.add_argument(
        "--progress",
        type=int,
        choices=(0, 1, 2),
        default=2,
        help="Keras progress: 0 none, 1 bar, 2 one line per epoch (default: 2)",
    )
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="score a model and two baselines on held-out assets; write a report"
    )
    evaluate.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="where the models are (default: the inference.models_dir setting)",
    )
    evaluate.add_argument(
        "--version",
        default=None,
        help="model version (default: inference.model_version, else the one named in CURRENT)",
    )
    evaluate.add_argument(
        "--report-dir",
        type=Path,
        default=DEFAULT_REPORT_DIR,
        help="where the JSON and PNG go (default: %(default)s)",
    )
    evaluate.add_argument("--no-plot", action="store_true", help="skip the PNG")
    evaluate.add_argument(
        "--progress",
        type=int,
        choices=(0, 1, 2),
        default=0,
        help="Keras progress while training the shortcut (default: 0)",
    )
    evaluate.set_defaults(handler=run_evaluate)
    _register_retrain(subparsers)


def _register_retrain(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retrain = subparsers.add_parser(
        "retrain",
        help="train a candidate, score it and the live model on the same held-out assets, "
        "promote it only if it is better",
    )
    retrain.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="where the models and CURRENT are (default: the inference.models_dir setting)",
    )
    source = retrain.add_mutually_exclusive_group()
    source.add_argument(
        "--simulate",
        type=int,
        default=None,
        metavar="N",
        help=f"train on a simulated fleet of N assets (default: {defaults.FLEET_ASSETS})",
    )
    source.add_argument(
        "--from-db",
        action="store_true",
        help="train on the database's history (feature rows labelled by recorded failures)",
    )
    _add_history_options(retrain)
    retrain.add_argument(
        "--seed",
        type=int,
        default=defaults.FLEET_SEED,
        help="simulation seed (default: %(default)s)",
    )
    retrain.add_argument(
        "--epochs",
        type=int,
        default=defaults.MAX_EPOCHS,
        help="maximum epochs; early stopping ends sooner (default: %(default)s)",
    )
    retrain.add_argument(
        "--metric",
        choices=("rmse", "phm08", "mae"),
        default="rmse",
        help="the candidate must be strictly lower on this, on the held-out assets "
        "(phm08: per window; default: %(default)s)",
    )
    retrain.add_argument(
        "--shadow",
        action="store_true",
        help="a winning candidate runs in shadow (models/SHADOW) instead of going live;"
        " then `cbm shadow status` and `cbm shadow promote`",
    )
    retrain.add_argument(
        "--shuffled-target",
        action="store_true",
        help="train on a shuffled target: a deliberately worse candidate, for tests and demos",
    )
    retrain.add_argument(
        "--by",
        default=None,
        metavar="NAME",
        help="who or what decided, recorded with the decision (default: the login name)",
    )
    retrain.add_argument(
        "--progress",
        type=int,
        choices=(0, 1, 2),
        default=2,
        help="Keras progress: 0 none, 1 bar, 2 one line per epoch (default: 2)",
    )
    retrain.set_defaults(handler=run_retrain)


def _add_history_options(parser: argparse.ArgumentParser) -> None:
    history = parser.add_argument_group("with --from-db")
    history.add_argument(
        "--with-simulated",
        type=int,
        default=0,
        metavar="N",
        help="add N simulated assets (seed --seed) to the recorded lives (default: 0)",
    )
    history.add_argument(
        "--speedup",
        type=float,
        default=None,
        help="the live simulator's --speedup the history was recorded at: RUL hours per "
        "hour of event time (default: 1, a real plant)",
    )
    history.add_argument(
        "--include-censored",
        action="store_true",
        help="keep windows of lives with no recorded failure where the machine is known to "
        "have run a full cap longer (labelled at the cap); default: leave censored lives out",
    )


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
    from services.training.train import TrainConfig, train  # noqa: PLC0415

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
    import getpass  # noqa: PLC0415

    from services.training.dataset import FleetConfig  # noqa: PLC0415
    from services.training.network import NetworkConfig  # noqa: PLC0415
    from services.training.retrain import Metric, RetrainConfig, retrain  # noqa: PLC0415
    from services.training.train import TrainConfig  # noqa: PLC0415

    if settings.inference.model_version is not None:
        print(
            f"note: inference.model_version pins {settings.inference.model_version}; "
            "a promotion moves CURRENT but the inference stage keeps the pinned model"
        )
    config = RetrainConfig(
        train=TrainConfig(
            fleet=FleetConfig(n_assets=args.simulate or defaults.FLEET_ASSETS, seed=args.seed),
            history=history_config(args),
            network=NetworkConfig(max_epochs=args.epochs),
        ),
        metric=Metric(args.metric),
        shuffled_target=args.shuffled_target,
        by=args.by or _login_name(getpass.getuser),
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


def _login_name(getuser: Callable[[], str]) -> str:
    """Return the login name, or "unknown" where there is none (a bare container)."""
    try:
        return getuser()
    except (KeyError, OSError):
        return "unknown"
