"""Helpers of the prognostics tests: run the verbs as the ``cbm`` command would."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from cbm.settings import Settings
from services.prognostics.cli import register


def parser() -> argparse.ArgumentParser:
    """Return a parser holding only this package's verbs, as services/cli.py adds them."""
    p = argparse.ArgumentParser(prog="cbm")
    register(p.add_subparsers(title="commands"))
    return p


@pytest.fixture
def cbm() -> Callable[..., int]:
    """Run ``cbm <argv>`` with the given settings; return the exit status."""

    def run(settings: Settings, *argv: str) -> int:
        args = parser().parse_args(argv)
        status: int = args.handler(settings, args)
        return status

    return run
