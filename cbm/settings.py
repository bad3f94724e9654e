"""Load the settings once: one YAML file plus ``CBM_*`` environment overrides.

The result is a frozen, validated object passed down to whoever needs it; no
module reads the environment on its own. A bad value fails at start with the
dotted key that holds it. Secrets (passwords, tokens, webhook URLs) come only
from the environment and are held as ``SecretStr`` so they never print.

Overrides: ``CBM_<SECTION>__<KEY>=value`` (double underscore between levels,
value parsed as YAML so ``true`` and ``5`` keep their types), e.g.
``CBM_MQTT__PORT=1884``; top-level keys as ``CBM_BASE_TOPIC``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from cbm.bearing import BearingGeometry
from cbm.errors import SettingsError
from cbm.topics import ASSET_ID_PATTERN

CONFIG_ENV = "CBM_CONFIG"
SECRET_ENV = {
    "CBM_DATABASE_PASSWORD": "database_password",
    "CBM_MQTT_PASSWORD": "mqtt_password",
    "CBM_SLACK_WEBHOOK_URL": "slack_webhook_url",
    "CBM_SLACK_BOT_TOKEN": "slack_bot_token",
    "CBM_PAGERDUTY_ROUTING_KEY": "pagerduty_routing_key",
}
# Variables read by other tools (tests, the demo), not by the settings.
_FOREIGN_PREFIXES = ("CBM_TEST_", "CBM_BENCH_", "CBM_DEMO_")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MqttSettings(_Frozen):
    """How every process reaches the broker."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=60)
    tls: bool = False
    ca_file: Path | None = None


class DatabaseSettings(_Frozen):
    """Where the database is; the password comes from CBM_DATABASE_PASSWORD."""

    url: str = "postgresql://127.0.0.1:5432/cbm"
    pool_min: int = Field(1, ge=1)
    pool_max: int = Field(4, ge=1)
    statement_timeout_ms: int = Field(30_000, ge=100)


class WorkerSettings(_Frozen):
    """Batching, partitioning and observability shared by every worker."""

    batch_max: int = Field(500, ge=1, le=10_000)
    # How long a batch may wait for more after its first message. 10 ms: at
    # 1,000 windows/s over 10,000 machines the chain kept p99 event -> row at
    # 210 ms (50 ms: 469 ms) and sustained 1,500/s (50 ms: 1,000/s); bench_pipeline.
    batch_ms: int = Field(10, ge=1, le=60_000)
    partitions: int = Field(16, ge=1, le=1000)
    instance: str = Field("0", pattern=r"^[a-z0-9-]{1,16}$")
    metrics_host: str = "127.0.0.1"
    metrics_ports: dict[str, int] = Field(
        default_factory=lambda: {
            "ingest": 9101,
            "features": 9102,
            "inference": 9103,
            "alerter": 9104,
        }
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_logs: bool = False
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(30.0, gt=0)


class IngestSettings(_Frozen):
    """What the ingest stage accepts."""

    max_payload_bytes: int = Field(512 * 1024, ge=1024)
    min_samples: int = Field(64, ge=1)
    max_samples: int = Field(65_536, ge=1)
    min_sample_rate_hz: float = Field(100.0, gt=0)
    max_sample_rate_hz: float = Field(200_000.0, gt=0)
    max_future_s: float = Field(300.0, ge=0)
    max_age_s: float = Field(7 * 24 * 3600.0, gt=0)
    temperature_max_age_s: float = Field(900.0, gt=0)
    temperature_min_c: float = -60.0
    temperature_max_c: float = 300.0
    accept_unknown_assets: bool = True
    # Windows per asset remembered for duplicate detection: ~200 bytes each, so
    # 64 keeps 10,000 assets near 130 MB (1,024 took ingest past 2 GB).
    dedupe_depth: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _ranges(self) -> IngestSettings:
        if self.min_samples > self.max_samples:
            raise ValueError("min_samples must not exceed max_samples")
        if self.min_sample_rate_hz >= self.max_sample_rate_hz:
            raise ValueError("min_sample_rate_hz must be below max_sample_rate_hz")
        return self


class FeaturesSettings(_Frozen):
    """How the features stage turns windows into feature vectors."""

    off_rms_g: float = Field(0.005, ge=0)  # below this RMS the machine counts as off
    temperature_history: int = Field(30, ge=2, le=1000)  # readings per asset for mean/std/slope


class InferenceSettings(_Frozen):
    """Which model the inference stage serves and how it scores anomalies."""

    models_dir: Path = Path("models")
    model_version: str | None = None  # None: the version named in models_dir/CURRENT
    reload_check_s: float = Field(5.0, gt=0)  # how often to look for a new model and repairs
    baseline_vectors: int = Field(20, ge=2)  # first running vectors that define "healthy"
    anomaly_std_floor: float = Field(0.05, gt=0)  # keeps z-scores finite on flat features
    explain_top: int = Field(3, ge=0, le=10)  # features named per prediction (0: off)
    # One message per prediction on {base}/predictions/{asset} for outside
    # consumers; costs ~70 us of paho CPU each (a third of the stage's CPU at
    # 2,000 windows/s). The alerter reads the partition frames on {base}/rul/.
    publish_per_asset: bool = True


class BearingSettings(_Frozen):
    """Bearing geometry in millimetres (default: a 6205 deep-groove bearing)."""

    n_balls: int = Field(9, ge=3)
    ball_diameter_mm: float = Field(7.94, gt=0)
    pitch_diameter_mm: float = Field(39.04, gt=0)
    contact_angle_deg: float = Field(0.0, ge=0, lt=90)

    def geometry(self) -> BearingGeometry:
        """Return the geometry as the signal-processing type."""
        return BearingGeometry(
            n_balls=self.n_balls,
            ball_diameter_mm=self.ball_diameter_mm,
            pitch_diameter_mm=self.pitch_diameter_mm,
            contact_angle_deg=self.contact_angle_deg,
        )


class AssetDefaults(_Frozen):
    """Settings of an asset that the asset list does not override."""

    site: str = "default"
    sample_rate_hz: float = Field(5000.0, gt=0)
    shaft_hz: float = Field(24.6, gt=0)
    bearing: BearingSettings = BearingSettings()
    resonance_band_hz: tuple[float, float] = (1200.0, 2400.0)


class AssetSettings(AssetDefaults):
    """One monitored machine."""

    id: str = Field(pattern=f"^{ASSET_ID_PATTERN.pattern}$")
    name: str = ""


class AssetsSettings(_Frozen):
    """The asset register: defaults plus listed assets."""

    defaults: AssetDefaults = AssetDefaults()
    items: tuple[AssetSettings, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> AssetsSettings:
        ids = [a.id for a in self.items]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"asset ids listed twice: {', '.join(duplicated)}")
        return self

    def get(self, asset_id: str) -> AssetSettings | None:
        """Return a listed asset, or None."""
        return self._index.get(asset_id)

    def resolve(self, asset_id: str) -> AssetSettings:
        """Return a listed asset, or one built from the defaults."""
        found = self._index.get(asset_id)
        if found is not None:
            return found
        return AssetSettings(id=asset_id, name=asset_id, **self.defaults.model_dump())

    @cached_property
    def _index(self) -> dict[str, AssetSettings]:
        # Built once, on first use: ingest looks an asset up per raw message.
        return {a.id: a for a in self.items}


class ThresholdOverride(_Frozen):
    """Per-asset RUL thresholds in hours (unset keys keep the global ones)."""

    warning_hours: float | None = Field(None, gt=0)
    critical_hours: float | None = Field(None, gt=0)
    emergency_hours: float | None = Field(None, gt=0)


class AlertingSettings(_Frozen):
    """Alert rules, receivers and delivery (the alerter stage)."""

    warning_hours: float = Field(50.0, gt=0)
    critical_hours: float = Field(20.0, gt=0)
    emergency_hours: float = Field(5.0, gt=0)
    hysteresis_hours: float = Field(5.0, ge=0)
    debounce_count: int = Field(2, ge=1)
    rate_limit_s: float = Field(900.0, ge=0)
    warning_repeat_s: float = Field(4 * 3600.0, gt=0)
    critical_repeat_s: float = Field(3600.0, gt=0)
    emergency_repeat_s: float = Field(900.0, gt=0)
    # Compare the 80 % interval's lower bound with the thresholds, not the point
    # estimate: on a 40-machine backtest the point estimate reached EMERGENCY
    # before failure for 20 of 30 failures, the lower bound for 30 (docs/backtest.md).
    use_interval_bound: bool = True
    anomaly_threshold: float = Field(3.0, gt=0)
    anomaly_margin: float = Field(0.5, ge=0)
    stale_after_s: float = Field(1800.0, gt=0)
    tick_s: float = Field(30.0, gt=0)
    overrides: dict[str, ThresholdOverride] = Field(default_factory=dict)
    grafana_url: str = "http://localhost:3000"
    # With CBM_SLACK_BOT_TOKEN: Web API, resolves edit in place. Never blank, so
    # alert routing and the senders agree on whether Slack is configured.
    slack_channel: str | None = Field(None, pattern=r"^\S+$")
    slack_api_url: str = "https://slack.com/api/"
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    delivery_interval_s: float = Field(1.0, gt=0)
    max_attempts: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _order(self) -> AlertingSettings:
        if not self.warning_hours > self.critical_hours > self.emergency_hours:
            raise ValueError("thresholds must satisfy warning > critical > emergency")
        return self


class Secrets(_Frozen):
    """Secrets, read from the environment only."""

    database_password: SecretStr | None = None
    mqtt_password: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    pagerduty_routing_key: SecretStr | None = None


class Settings(_Frozen):
    """Every setting of the pipeline."""

    base_topic: str = Field("cbm", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    mqtt: MqttSettings = MqttSettings()
    database: DatabaseSettings = DatabaseSettings()
    worker: WorkerSettings = WorkerSettings()
    ingest: IngestSettings = IngestSettings()
    features: FeaturesSettings = FeaturesSettings()
    inference: InferenceSettings = InferenceSettings()
    assets: AssetsSettings = AssetsSettings()
    alerting: AlertingSettings = AlertingSettings()
    secrets: Secrets = Secrets()


def load_settings(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load the YAML file (``path``, else ``$CBM_CONFIG``, else none) and apply overrides."""
    env = os.environ if environ is None else environ
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(path)
    if "secrets" in data:
        raise SettingsError("secrets: secrets are read from the environment only, not the file")
    _apply_env(data, env)
    return from_mapping(data)


def from_mapping(data: Mapping[str, Any]) -> Settings:
    """Validate a plain mapping into Settings; the error names the bad key."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(f"settings file {path} must hold a mapping at the top")
    return loaded


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    secrets: dict[str, str] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith("CBM_") or name == CONFIG_ENV:
            continue
        if name.startswith(_FOREIGN_PREFIXES):
            continue
        if name in SECRET_ENV:
            if raw:
                secrets[SECRET_ENV[name]] = raw
            continue
        path = [part.lower() for part in name[4:].split("__")]
        if not all(path) or path[0] not in Settings.model_fields or path[0] == "secrets":
            raise SettingsError(f"{name}: no such setting")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SettingsError(f"{name}: {part} is not a section")
            node = child
        node[path[-1]] = value
    if secrets:
        data["secrets"] = secrets
