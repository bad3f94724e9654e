"""Fixtures of the alerter tests: a local Slack/PagerDuty receiver, no proxies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.receiver import PROXY_VARIABLES, Receiver


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack-sdk reads HTTP(S)_PROXY and ignores NO_PROXY: a proxy set in the
    # environment would swallow the requests meant for the local receiver.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
