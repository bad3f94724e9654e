"""The arguments of ``cbm train``, ``evaluate`` and ``retrain``: one parser per verb.

Each function adds its verb's parser and returns it; :mod:`services.training.cli`
attaches the handlers. Only the defaults are imported here, so building the
parsers costs nothing (no numpy, let alone TensorFlow).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from services.argtypes import count, fleet_size, non_negative_count, open_share, positive, share
from services.training import defaults

DEFAULT_REPORT_DIR = Path("reports")


def add_train(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``train`` verb's parser to the ``cbm`` command and return it."""
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
        type=fleet_size,
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
        type=positive,
        default=defaults.LIFE_MEAN_HOURS,
        help="mean operating life of a simulated asset (default: %(default)s)",
    )
    train.add_argument(
        "--healthy-share",
        type=share,
        default=defaults.HEALTHY_SHARE,
        help="share of never-failing assets (default: %(default)s)",
    )
    train.add_argument(
        "--cap-hours",
        type=positive,
        default=defaults.CAP_HOURS,
        help="RUL target cap in hours (default: %(default)s)",
    )
    train.add_argument(
        "--lookback",
        type=count,
        default=defaults.LOOKBACK,
        help="feature vectors per sequence (default: %(default)s)",
    )
    train.add_argument(
        "--coverage",
        type=open_share,
        default=defaults.COVERAGE,
        help="target coverage of the interval (default: %(default)s)",
    )
    train.add_argument(
        "--epochs",
        type=count,
        default=defaults.MAX_EPOCHS,
        help="maximum epochs; early stopping ends sooner (default: %(default)s)",
    )
    train.add_argument(
        "--units", type=count, default=defaults.UNITS, help="LSTM units (default: %(default)s)"
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
    return train


def add_evaluate(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``evaluate`` verb's parser to the ``cbm`` command and return it."""
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
    return evaluate


def add_retrain(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``retrain`` verb's parser to the ``cbm`` command and return it."""
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
        type=fleet_size,
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
        type=count,
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
    return retrain


def _add_history_options(parser: argparse.ArgumentParser) -> None:
    history = parser.add_argument_group("with --from-db")
    history.add_argument(
        "--with-simulated",
        type=non_negative_count,
        default=0,
        metavar="N",
        help="add N simulated assets (seed --seed) to the recorded lives (default: 0)",
    )
    history.add_argument(
        "--speedup",
        type=positive,
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
