"""Fixtures of the end-to-end tests: the four workers as processes, posting to the local Slack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cbm.settings import Settings
from tests.support.pipeline import Pipeline, metrics_ports
from tests.support.receiver import Receiver
from tests.support.services import ROOT

MODELS = ROOT / "models"
SettingsFactory = Callable[..., Settings]
PipelineFactory = Callable[[Settings], Pipeline]


@pytest.fixture
def e2e_settings(make_settings: SettingsFactory) -> SettingsFactory:
    """Settings for the whole chain: metrics ports, the committed model, quick alert delivery."""

    def build(**sections: Any) -> Settings:
        worker = {"metrics_ports": metrics_ports(), **sections.pop("worker", {})}
        inference = {"models_dir": str(MODELS), **sections.pop("inference", {})}
        alerting = {"delivery_interval_s": 0.1, **sections.pop("alerting", {})}
        return make_settings(worker=worker, inference=inference, alerting=alerting, **sections)

    return build


@pytest.fixture
def start_pipeline(tmp_path: Path, receiver: Receiver) -> Iterator[PipelineFactory]:
    """Start ingest, features, inference and alerter as ``cbm run`` processes."""
    started: list[Pipeline] = []

    def start(settings: Settings) -> Pipeline:
        pipeline = Pipeline(settings, tmp_path, env={"CBM_SLACK_WEBHOOK_URL": receiver.webhook_url})
        started.append(pipeline)
        return pipeline

    yield start
    for pipeline in started:
        pipeline.stop()
