"""Rights per role and per device, and the ACL file edited section by section."""

from __future__ import annotations

from pathlib import Path

import pytest

from cbm.errors import CbmError
from cbm.topics import Topics
from services.mqttadmin.acl import (
    ROLES,
    STACK_USERS,
    AclFile,
    Role,
    Rule,
    Section,
    device_rules,
    role_rules,
    stack_acl,
    validate_username,
)

ROOT = Path(__file__).resolve().parents[2]
CBM = Topics("cbm")


def test_committed_acl_is_what_the_code_generates() -> None:
    committed = (ROOT / "mosquitto" / "acl").read_text()

    assert committed == stack_acl(CBM), (
        "mosquitto/acl is stale; regenerate it with: .venv/bin/python -c "
        '"import sys; from cbm.topics import Topics; from services.mqttadmin.acl import '
        "stack_acl; sys.stdout.write(stack_acl(Topics('cbm')))\" > mosquitto/acl"
    )


def test_device_may_write_its_two_raw_topics_only() -> None:
    assert device_rules("pump-001", CBM) == (
        Rule("write", "cbm/raw/pump-001/vibration"),
        Rule("write", "cbm/raw/pump-001/temperature"),
    )


def test_each_worker_reads_its_input_and_writes_its_outputs() -> None:
    def lines(role: Role) -> list[str]:
        return [rule.render() for rule in role_rules(role, CBM)]

    assert lines("ingest") == [
        "topic read cbm/raw/+/vibration",
        "topic read cbm/raw/+/temperature",
        "topic write cbm/windows/+",
        "topic write cbm/deadletter/ingest",
        "topic write cbm/status/ingest",
    ]
    assert lines("features") == [
        "topic read cbm/windows/+",
        "topic write cbm/features/+",
        "topic write cbm/deadletter/features",
        "topic write cbm/status/features",
    ]
    assert lines("inference") == [
        "topic read cbm/features/+",
        "topic write cbm/predictions/+",
        "topic write cbm/rul/+",
        "topic write cbm/deadletter/inference",
        "topic write cbm/status/inference",
    ]
    assert lines("alerter") == [
        "topic read cbm/rul/+",
        "topic read cbm/status/+",
        "topic write cbm/alerts/+",
        "topic write cbm/deadletter/alerter",
        "topic write cbm/status/alerter",
    ]
    assert lines("simulator") == [
        "topic write cbm/raw/+/vibration",
        "topic write cbm/raw/+/temperature",
    ]
    assert lines("readonly") == ["topic deny #"]


def test_rules_follow_the_configured_base_topic() -> None:
    plant = Topics("plant7/line2")

    for role in ROLES:
        for rule in role_rules(role, plant):
            assert rule.topic == "#" or rule.topic.startswith("plant7/line2/"), (role, rule)
    assert device_rules("fan-3", plant)[0].topic == "plant7/line2/raw/fan-3/vibration"


def test_no_role_may_write_what_another_stage_owns() -> None:
    writers: dict[str, list[str]] = {}
    for role in ROLES:
        for rule in role_rules(role, CBM):
            if rule.access == "write":
                writers.setdefault(rule.topic, []).append(role)

    assert all(len(roles) == 1 for roles in writers.values()), writers


def test_parse_and_render_round_trip_the_stack_file() -> None:
    text = stack_acl(CBM)
    acl = AclFile.parse(text)

    assert [(s.username, s.kind, s.role) for s in acl.sections] == [
        (name, "role", role) for name, role in STACK_USERS.items()
    ]
    assert acl.render() == text


def test_put_replaces_a_section_in_place_and_keeps_hand_edits() -> None:
    text = (
        "# header\n\n"
        "# device: pump-1\nuser pump-1\ntopic write cbm/raw/pump-1/vibration\n\n"
        "# kept by hand\nuser bridge\ntopic readwrite site/#\n\n\n"
        "user pump-1\ntopic write cbm/raw/pump-1/extra\n"
    )
    acl = AclFile.parse(text)
    assert [(s.username, s.kind) for s in acl.sections] == [
        ("pump-1", "device"),
        ("bridge", "manual"),
        ("pump-1", "manual"),
    ]

    assert acl.put(Section.for_device("pump-1", CBM)) is True
    assert acl.put(Section.for_device("pump-2", CBM)) is False

    assert acl.render() == (
        "# header\n\n"
        "# device: pump-1\nuser pump-1\n"
        "topic write cbm/raw/pump-1/vibration\ntopic write cbm/raw/pump-1/temperature\n\n"
        "# kept by hand\nuser bridge\ntopic readwrite site/#\n\n"
        "# device: pump-2\nuser pump-2\n"
        "topic write cbm/raw/pump-2/vibration\ntopic write cbm/raw/pump-2/temperature\n"
    )


def test_section_topics_read_every_form_of_topic_line() -> None:
    acl = AclFile.parse(
        "# role: ingest\nuser ingest\ntopic cbm/a\ntopic read cbm/b\ntopic deny cbm/c d\n"
    )

    assert acl.sections[0].topics() == ["cbm/a", "cbm/b", "cbm/c d"]


def test_a_marker_must_name_the_user_it_sits_on() -> None:
    acl = AclFile.parse("# device: pump-9\nuser other\ntopic write x\n")

    assert acl.sections[0].kind == "manual"


@pytest.mark.parametrize("name", ["", "a b", "a:b", "#x", "x/y", "+", "a\nuser root", "x" * 65])
def test_unsafe_user_names_are_refused(name: str) -> None:
    with pytest.raises(CbmError):
        validate_username(name)
    with pytest.raises(CbmError):
        Section.for_device(name, CBM)
