"""The verbs refuse a bad number at parse time, naming the option."""

from __future__ import annotations

import pytest

from services.cli import main


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["train", "--assets", "0"], "--assets: need at least one asset, got '0'"),
        (["train", "--coverage", "1"], "--coverage: must be between 0 and 1 (exclusive)"),
        (["train", "--healthy-share", "1.5"], "--healthy-share: must be in [0, 1]"),
        (["train", "--cap-hours", "nan"], "--cap-hours: must be finite"),
        (["train", "--lookback", "0"], "--lookback: must be at least 1"),
        (["train", "--epochs", "ten"], "--epochs: not a whole number: 'ten'"),
        (["retrain", "--simulate", "0"], "--simulate: need at least one asset"),
        (["retrain", "--from-db", "--with-simulated", "-1"], "--with-simulated: must be >= 0"),
        (["retrain", "--from-db", "--speedup", "0"], "--speedup: must be > 0"),
        (["backtest", "--simulate", "0"], "--simulate: need at least one asset"),
        (["backtest", "--cost-miss", "-1"], "--cost-miss: must be >= 0"),
        (["demo", "--assets", "0"], "--assets: need at least one asset"),
        (["shadow", "status", "--speedup", "0"], "--speedup: must be > 0"),
        (["demo", "--minutes", "-5"], "--minutes: must be > 0"),
    ],
)
def test_bad_numbers_are_refused_before_any_work(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert complaint in capsys.readouterr().err
