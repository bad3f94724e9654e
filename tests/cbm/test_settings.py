from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cbm.errors import SettingsError
from cbm.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "cbm.example.yaml"


def test_the_commented_example_loads_and_lists_assets() -> None:
    s = load_settings(EXAMPLE, environ={})
    assert s.assets.items, "the example should show how to list assets"
    listed = s.assets.items[0]
    assert s.assets.resolve(listed.id) is listed


def test_unlisted_assets_get_the_defaults() -> None:
    s = load_settings(None, environ={})
    a = s.assets.resolve("unknown-9")
    assert a.id == "unknown-9" and a.sample_rate_hz == s.assets.defaults.sample_rate_hz
    assert a.bearing.geometry().n_balls == 9


def test_environment_overrides_nested_keys_with_yaml_types(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("mqtt:\n  host: broker.local\n  port: 1883\n")
    s = load_settings(
        f,
        environ={
            "CBM_MQTT__PORT": "8883",
            "CBM_INGEST__ACCEPT_UNKNOWN_ASSETS": "false",
            "CBM_BASE_TOPIC": "plant7",
        },
    )
    assert (s.mqtt.host, s.mqtt.port) == ("broker.local", 8883)
    assert s.ingest.accept_unknown_assets is False
    assert s.base_topic == "plant7"


def test_config_path_comes_from_cbm_config(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("worker:\n  batch_max: 64\n")
    assert load_settings(environ={"CBM_CONFIG": str(f)}).worker.batch_max == 64


@pytest.mark.parametrize(
    ("text", "env", "key"),
    [
        ("mqtt:\n  port: 70000\n", {}, "mqtt.port"),
        ("ingest:\n  min_samples: 10\n  max_samples: 5\n", {}, "ingest"),
        ("worker:\n  batch_mx: 5\n", {}, "worker.batch_mx"),
        ("assets:\n  items:\n    - id: 'bad/id'\n", {}, "assets.items.0.id"),
        ("assets:\n  items:\n    - {id: a}\n    - {id: a}\n", {}, "assets"),
        ("", {"CBM_WORKER__BATCH_MAX": "lots"}, "worker.batch_max"),
        ("", {"CBM_NOPE": "1"}, "CBM_NOPE"),
        ("secrets:\n  database_password: x\n", {}, "secrets"),
        ("alerting:\n  slack_channel: ''\n", {}, "alerting.slack_channel"),
        ("- a list\n", {}, "mapping"),
        ("mqtt: [unclosed\n", {}, "not valid YAML"),
    ],
)
def test_bad_values_fail_at_start_naming_the_key(
    tmp_path: Path, text: str, env: dict[str, str], key: str
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(SettingsError) as err:
        load_settings(f, environ=env)
    assert key in str(err.value)


def test_secrets_come_from_the_environment_and_never_print() -> None:
    s = load_settings(
        None,
        environ={
            "CBM_DATABASE_PASSWORD": "hunter2",
            "CBM_SLACK_WEBHOOK_URL": "https://hooks.example/T/B/x",
        },
    )
    assert s.secrets.database_password is not None
    assert s.secrets.database_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s) and "hooks.example" not in repr(s)
    assert "hunter2" not in str(s.model_dump())


def test_settings_are_frozen() -> None:
    s = load_settings(None, environ={})
    with pytest.raises(Exception, match="frozen"):
        s.mqtt.port = 1  # type: ignore[misc]


def test_the_example_names_every_key_with_its_default() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    defaults = load_settings(None, environ={})
    example = load_settings(EXAMPLE, environ={})
    assert set(raw) == set(type(defaults).model_fields) - {"secrets"}  # secrets: environment only
    for section in ("mqtt", "database", "worker", "ingest", "features", "inference", "alerting"):
        model = getattr(defaults, section)
        assert set(raw[section]) == set(type(model).model_fields), section
        assert getattr(example, section) == model, f"{section}: a shown value is not the default"
    assert set(raw["assets"]["defaults"]) == set(type(defaults.assets.defaults).model_fields)
    assert example.assets.defaults == defaults.assets.defaults
    assert example.base_topic == defaults.base_topic
