"""`cbm mqtt add-device` / `add-user`: the files they write and what they print."""

from __future__ import annotations

import argparse
import io
import os
import pwd
import re
import shutil
from pathlib import Path

import pytest

from cbm.errors import CbmError
from cbm.settings import Settings, from_mapping
from cbm.topics import Topics
from services.mqttadmin.accounts import add_device, add_user
from services.mqttadmin.cli import register
from services.mqttadmin.passwd import verify_password

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    acl = tmp_path / "acl"
    shutil.copyfile(ROOT / "mosquitto" / "acl", acl)
    return tmp_path / "passwd", acl


def run(argv: list[str], settings: Settings | None = None) -> str:
    parser = argparse.ArgumentParser(prog="cbm")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    out = io.StringIO()
    assert args.handler(settings or from_mapping({}), args, out) == 0
    return out.getvalue()


def file_args(files: tuple[Path, Path]) -> list[str]:
    return ["--password-file", str(files[0]), "--acl-file", str(files[1])]


def printed_password(output: str) -> str:
    match = re.search(r"^  password\s+(\S+)", output, re.MULTILINE)
    assert match is not None, output
    return match[1]


def test_add_device_writes_its_entry_and_section_and_prints_what_it_needs(
    files: tuple[Path, Path],
) -> None:
    settings = from_mapping({"mqtt": {"host": "broker.plant", "port": 8883, "tls": True}})

    output = run(["mqtt", "add-device", "pump-001", *file_args(files)], settings)

    password = printed_password(output)
    passwd, acl = files
    name, encoded = passwd.read_text().strip().split(":", 1)
    assert name == "pump-001" and verify_password(password, encoded)
    assert passwd.stat().st_mode & 0o777 == 0o600
    assert acl.read_text().endswith(
        "# device: pump-001\nuser pump-001\n"
        "topic write cbm/raw/pump-001/vibration\n"
        "topic write cbm/raw/pump-001/temperature\n"
    )
    for needed in (
        "broker.plant:8883",
        "TLS on",
        "username    pump-001",
        "cbm/raw/pump-001/vibration",
        "cbm/raw/pump-001/temperature",
        "QoS         1",
        "docs/asyncapi.yaml",
        "SIGHUP",
    ):
        assert needed in output, needed


def test_add_device_twice_keeps_one_entry_with_the_new_password(files: tuple[Path, Path]) -> None:
    first = printed_password(run(["mqtt", "add-device", "pump-001", *file_args(files)]))
    second_output = run(["mqtt", "add-device", "pump-001", *file_args(files)])
    second = printed_password(second_output)

    passwd, acl = files
    entries = passwd.read_text().splitlines()
    assert len(entries) == 1
    encoded = entries[0].split(":", 1)[1]
    assert verify_password(second, encoded)
    assert not verify_password(first, encoded)
    assert acl.read_text().count("user pump-001\n") == 1
    assert "re-keyed" in second_output


def test_add_device_uses_the_configured_base_topic(tmp_path: Path) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    settings = from_mapping({"base_topic": "plant7"})
    run(
        [
            "mqtt",
            "add-user",
            "ingest",
            "--role",
            "ingest",
            "--password-file",
            str(passwd),
            "--acl-file",
            str(acl),
        ],
        settings,
    )

    output = run(
        ["mqtt", "add-device", "fan-3", "--password-file", str(passwd), "--acl-file", str(acl)],
        settings,
    )

    assert "plant7/raw/fan-3/vibration" in output
    assert "topic write plant7/raw/fan-3/temperature" in acl.read_text()


def test_add_device_refuses_an_acl_written_for_another_base(files: tuple[Path, Path]) -> None:
    passwd, acl = files

    with pytest.raises(CbmError, match="outside base 'plant7'"):
        add_device("fan-3", topics=Topics("plant7"), password_file=passwd, acl_file=acl)
    assert not passwd.exists()


def test_chosen_password_is_used_and_not_printed(files: tuple[Path, Path]) -> None:
    output = run(
        [
            "mqtt",
            "add-device",
            "pump-002",
            *file_args(files),
            "--password",
            "a chosen password of length",
        ]
    )

    assert "a chosen password" not in output
    encoded = files[0].read_text().strip().split(":", 1)[1]
    assert verify_password("a chosen password of length", encoded)


def test_short_chosen_password_is_refused(files: tuple[Path, Path]) -> None:
    with pytest.raises(CbmError, match="at least 16"):
        add_device(
            "pump-002", topics=Topics(), password_file=files[0], acl_file=files[1], password="short"
        )


@pytest.mark.parametrize("asset", ["pump 1", "pump/1", "+", "#", "", "ü-pump"])
def test_bad_asset_ids_are_refused_before_any_write(files: tuple[Path, Path], asset: str) -> None:
    acl_before = files[1].read_text()

    with pytest.raises(CbmError):
        add_device(asset, topics=Topics(), password_file=files[0], acl_file=files[1])

    assert not files[0].exists()
    assert files[1].read_text() == acl_before


def test_a_device_cannot_take_over_a_stack_account(files: tuple[Path, Path]) -> None:
    with pytest.raises(CbmError, match="is a role"):
        add_device("ingest", topics=Topics(), password_file=files[0], acl_file=files[1])
    add_device("pump-001", topics=Topics(), password_file=files[0], acl_file=files[1])
    with pytest.raises(CbmError, match="is a device"):
        add_user("pump-001", "ingest", topics=Topics(), password_file=files[0], acl_file=files[1])


def test_accounts_edited_by_hand_are_left_alone(files: tuple[Path, Path]) -> None:
    passwd, acl = files
    acl.write_text(acl.read_text() + "\nuser bridge\ntopic readwrite site/#\n")
    passwd.write_text("legacy:$7$101$AAAAAAAAAAAAAAAA$AAAA\n")

    with pytest.raises(CbmError, match="edited by hand"):
        add_device("bridge", topics=Topics(), password_file=passwd, acl_file=acl)
    with pytest.raises(CbmError, match="no section"):
        add_device("legacy", topics=Topics(), password_file=passwd, acl_file=acl)


def test_add_user_rekeys_a_stack_account_and_prints_its_rights(files: tuple[Path, Path]) -> None:
    acl_before = files[1].read_text()

    output = run(["mqtt", "add-user", "ingest", "--role", "ingest", *file_args(files)])

    assert files[1].read_text() == acl_before  # the committed section, rewritten identically
    assert "CBM_MQTT__USERNAME=ingest" in output
    assert "rights      read cbm/raw/+/vibration" in output
    encoded = files[0].read_text().strip().split(":", 1)[1]
    assert verify_password(printed_password(output), encoded)


def test_add_user_readonly_gets_no_rights(files: tuple[Path, Path]) -> None:
    output = run(["mqtt", "add-user", "grafana-2", "--role", "readonly", *file_args(files)])

    assert files[1].read_text().endswith("user grafana-2\ntopic deny #\n")
    assert "CBM_MQTT__USERNAME" not in output


def test_missing_acl_file_is_created_with_its_header(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    add_user("ingest", "ingest", topics=Topics(), password_file=tmp_path / "p", acl_file=acl)

    assert acl.read_text().startswith("# Mosquitto ACL of the CBM stack")
    assert acl.stat().st_mode & 0o777 == 0o644


def test_missing_directory_is_an_error_not_a_new_tree(tmp_path: Path) -> None:
    with pytest.raises(CbmError, match="does not exist"):
        add_user(
            "ingest",
            "ingest",
            topics=Topics(),
            password_file=tmp_path / "no" / "p",
            acl_file=tmp_path / "acl",
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files away")
def test_rewritten_files_keep_their_owner_so_the_broker_can_read_them(
    files: tuple[Path, Path],
) -> None:
    passwd, acl = files
    add_device("pump-001", topics=Topics(), password_file=passwd, acl_file=acl)
    nobody = pwd.getpwnam("nobody")
    for path in files:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)

    add_device("pump-001", topics=Topics(), password_file=passwd, acl_file=acl)

    assert [p.stat().st_uid for p in files] == [nobody.pw_uid] * 2
    assert passwd.stat().st_mode & 0o777 == 0o600
    assert not list(passwd.parent.glob(".passwd.*"))  # no temporary file left behind
