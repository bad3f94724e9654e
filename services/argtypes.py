"""Value types for argparse shared by the ``cbm`` verbs: a bad value fails at parse time.

Each parses one command-line word and raises ``argparse.ArgumentTypeError``
with the offending text, so ``--simulate 0`` or ``--coverage 1`` is refused
before any work starts instead of meaning something else or failing late.
"""

from __future__ import annotations

import argparse
import getpass
import math


def positive(text: str) -> float:
    """Parse a finite number > 0."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def non_negative(text: str) -> float:
    """Parse a finite number >= 0."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def share(text: str) -> float:
    """Parse a fraction in [0, 1]."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text!r}")
    return value


def open_share(text: str) -> float:
    """Parse a fraction strictly between 0 and 1 (an interval's coverage)."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text!r}")
    return value


def fleet_size(text: str) -> int:
    """Parse a number of assets >= 1."""
    return _whole(text, minimum=1, complaint="need at least one asset")


def count(text: str) -> int:
    """Parse a whole number >= 1 (epochs, units, lookback)."""
    return _whole(text, minimum=1, complaint="must be at least 1")


def non_negative_count(text: str) -> int:
    """Parse a whole number >= 0."""
    return _whole(text, minimum=0, complaint="must be >= 0")


def login_name() -> str:
    """Return who runs the command (the default of ``--by``), or "unknown" in a bare container."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _whole(text: str, *, minimum: int, complaint: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{complaint}, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value
