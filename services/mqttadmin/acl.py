"""Decide who may use which topics, and edit Mosquitto's ACL file by user section.

Every account gets its own ``user`` section of ``topic`` lines; the file has
no ``pattern`` lines. A pattern such as ``pattern write cbm/raw/%u/#`` would
spare one section per device, but Mosquitto applies patterns to *every*
user: the worker and read-only accounts would each gain write access to
``cbm/raw/<their name>/...`` and could forge data for an asset of that name.
Per-user sections grant exactly what is listed, turn the ACL file into the
register of devices, and cost five lines per device.

How Mosquitto 2.0 applies the file (``security_default.c``): a user's
``deny`` lines are checked first, then the grants in order, then patterns;
a user without a section, and without a matching pattern, may do nothing.
SUBSCRIBE is never checked (the broker grants every filter): ``read`` is
checked per message at delivery, so a filter wider than the grant is
accepted and silently delivers only what ``read`` allows.

Sections this module writes start with a marker comment (``# device: <id>``
or ``# role: <role>``); it replaces only those and leaves the rest alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from cbm.errors import MqttAdminError
from cbm.topics import ASSET_ID_PATTERN, Topics, validate_asset_id

Role = Literal["ingest", "features", "inference", "alerter", "simulator", "readonly"]
ROLES: tuple[Role, ...] = get_args(Role)
Access = Literal["read", "write", "deny"]
Kind = Literal["device", "role", "manual"]

# The stack's own accounts (user name -> role); mosquitto/acl holds their sections.
STACK_USERS: dict[str, Role] = {
    "ingest": "ingest",
    "features": "features",
    "inference": "inference",
    "alerter": "alerter",
    "simulator": "simulator",
    "grafana": "readonly",
}
# Devices log in with their asset id, so users and assets share one namespace.
USERNAME_PATTERN = ASSET_ID_PATTERN

_ROLE_PURPOSE: dict[Role, str] = {
    "ingest": "raw in; windows, its dead letters and status out",
    "features": "windows in; features, its dead letters and status out",
    "inference": "features in; predictions (per asset and batched), dead letters, status out",
    "alerter": "batched predictions and worker status in; alerts, dead letters, status out",
    "simulator": "publishes raw data for any asset",
    "readonly": "Grafana and read-only tools: may log in, may not publish or receive",
}

HEADER = """\
# Mosquitto ACL of the CBM stack (acl_file syntax, Mosquitto 2.0).
#
# Written by `cbm mqtt add-user` and `cbm mqtt add-device`: one `user` section
# per account, each granting exactly what that account needs. No `pattern`
# lines: Mosquitto applies a pattern to every user, so a device pattern such as
# `cbm/raw/%u/#` would also let the worker and read-only accounts publish raw
# data under their own names. A user without a section may do nothing.
#
# Subscriptions are always acknowledged; `read` is checked per message at
# delivery. Devices: `cbm mqtt add-device <asset>` appends its section, then
# reload the broker (SIGHUP). Sections under a `# device:` or `# role:` marker
# are rewritten by those commands; edit others by hand."""

_ROLE_BY_NAME: dict[str, Role] = {role: role for role in ROLES}
_ACCESS_WORDS = frozenset({"read", "write", "readwrite", "deny"})
_USER_LINE = re.compile(r"user +(?P<name>.*\S)\s*")
_MARKER = re.compile(r"# (?P<kind>device|role): (?P<value>\S+)")


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``topic`` line: an access right on a topic filter."""

    access: Access
    topic: str

    def render(self) -> str:
        """Return the ACL file line."""
        return f"topic {self.access} {self.topic}"


def validate_username(name: str) -> str:
    """Return ``name`` if it is safe in the password and ACL files, else raise."""
    if not USERNAME_PATTERN.fullmatch(name):
        raise MqttAdminError(
            f"user name {name[:80]!r} is not allowed: 1-64 letters, digits, '_', '.', '-'"
        )
    return name


def device_rules(asset_id: str, topics: Topics) -> tuple[Rule, ...]:
    """Return what a device may do: publish its own asset's raw data, nothing else."""
    return (
        Rule("write", topics.raw(asset_id, "vibration")),
        Rule("write", topics.raw(asset_id, "temperature")),
    )


def role_rules(role: Role, topics: Topics) -> tuple[Rule, ...]:
    """Return what an account of ``role`` may do: what its stage needs, nothing else."""
    if role == "readonly":
        # Explicit, so that a pattern line added to the file one day grants it nothing.
        return (Rule("deny", "#"),)
    if role == "simulator":
        return (
            Rule("write", topics.raw_filter("vibration")),
            Rule("write", topics.raw_filter("temperature")),
        )
    reads: tuple[str, ...]
    outputs: tuple[Literal["windows", "features", "rul", "predictions", "alerts"], ...]
    if role == "ingest":
        reads = (topics.raw_filter("vibration"), topics.raw_filter("temperature"))
        outputs = ("windows",)
    elif role == "features":
        reads, outputs = (topics.stage_filter("windows"),), ("features",)
    elif role == "inference":
        reads, outputs = (topics.stage_filter("features"),), ("predictions", "rul")
    else:  # alerter: worker status too, to notice a stage that went offline
        reads, outputs = (topics.stage_filter("rul"), _status_filter(topics)), ("alerts",)
    return (
        *(Rule("read", topic) for topic in reads),
        *(Rule("write", topics.stage_filter(output)) for output in outputs),
        Rule("write", topics.deadletter(role)),
        Rule("write", topics.status(role)),
    )


def _status_filter(topics: Topics) -> str:
    # cbm.topics has no status filter yet; this is the one place that spells it.
    return f"{topics.base}/status/+"


@dataclass(frozen=True, slots=True)
class Section:
    """One user's section of the ACL file: marker comments, ``user`` line, rules."""

    username: str
    kind: Kind
    role: Role | None
    lines: tuple[str, ...]

    @classmethod
    def for_device(cls, asset_id: str, topics: Topics) -> Section:
        """Build the section of a device whose username is its asset id."""
        validate_asset_id(asset_id)
        rules = device_rules(asset_id, topics)
        lines = (f"# device: {asset_id}", f"user {asset_id}", *(r.render() for r in rules))
        return cls(asset_id, "device", None, lines)

    @classmethod
    def for_role(cls, username: str, role: Role, topics: Topics) -> Section:
        """Build the section of a stack account with one role."""
        rules = role_rules(role, topics)
        lines = (
            f"# role: {role} ({_ROLE_PURPOSE[role]})",
            f"user {validate_username(username)}",
            *(r.render() for r in rules),
        )
        return cls(username, "role", role, lines)

    def topics(self) -> list[str]:
        """Return the topic filters of this section's rules."""
        found = []
        for line in self.lines:
            if not line.startswith("topic "):
                continue
            # "topic [read|write|readwrite|deny] <filter>": the access word is optional.
            _keyword, rest = line.split(" ", 1)
            access, _, topic = rest.partition(" ")
            found.append(topic.strip() if topic and access in _ACCESS_WORDS else rest.strip())
        return found


@dataclass
class AclFile:
    """A Mosquitto ACL file as a header and one section per user."""

    header: list[str]
    sections: list[Section]

    @classmethod
    def parse(cls, text: str) -> AclFile:
        """Split the file at its ``user`` lines; comments right above one belong to it."""
        lines = text.splitlines()
        starts: list[tuple[int, str]] = []
        floor = 0  # first line after the previous ``user`` line
        for index, line in enumerate(lines):
            match = _USER_LINE.fullmatch(line)
            if match is None:
                continue
            start = index
            while start > floor and lines[start - 1].startswith("#"):
                start -= 1
            starts.append((start, match["name"]))
            floor = index + 1
        header_end = starts[0][0] if starts else len(lines)
        sections = []
        for number, (start, name) in enumerate(starts):
            end = starts[number + 1][0] if number + 1 < len(starts) else len(lines)
            sections.append(_section(name, _strip_blank(lines[start:end])))
        return cls(_strip_blank(lines[:header_end]), sections)

    def sections_of(self, username: str) -> list[Section]:
        """Return every section of ``username``; Mosquitto merges them."""
        return [s for s in self.sections if s.username == username]

    def put(self, section: Section) -> bool:
        """Store ``section`` in place of the user's sections; return whether one existed.

        Mosquitto merges sections that name one user, so every one is replaced.
        """
        kept: list[Section] = []
        replaced = False
        for existing in self.sections:
            if existing.username != section.username:
                kept.append(existing)
            elif not replaced:
                kept.append(section)
                replaced = True
        self.sections = kept if replaced else [*kept, section]
        return replaced

    def render(self) -> str:
        """Return the file's text: the header, then sections one blank line apart."""
        blocks = [list(self.header)] if self.header else []
        blocks += [list(s.lines) for s in self.sections]
        return "\n\n".join("\n".join(block) for block in blocks) + "\n"


def stack_acl(topics: Topics) -> str:
    """Return the ACL of the stack's own accounts (``mosquitto/acl`` for base ``cbm``)."""
    acl = AclFile(
        HEADER.splitlines(),
        [Section.for_role(name, role, topics) for name, role in STACK_USERS.items()],
    )
    return acl.render()


def _section(name: str, lines: list[str]) -> Section:
    kind: Kind = "manual"
    role: Role | None = None
    for line in lines:
        match = _MARKER.match(line)
        if match is None:
            continue
        value = match["value"]
        if match["kind"] == "device" and value == name:
            kind = "device"
        elif match["kind"] == "role" and value in _ROLE_BY_NAME:
            kind, role = "role", _ROLE_BY_NAME[value]
    return Section(name, kind, role, tuple(lines))


def _strip_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]
