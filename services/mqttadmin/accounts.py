"""Add or re-key a broker account: its password entry and its ACL section.

Idempotent per name: adding an account again gives it a new password and a
freshly written section, and keeps one entry of each. The ACL file is written
first, so an interrupted run leaves at worst a section without a password,
which cannot log in. Run one change at a time; the broker applies them on
SIGHUP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cbm.errors import MqttAdminError
from cbm.topics import Topics, validate_asset_id
from services.mqttadmin.acl import HEADER, AclFile, Role, Section, validate_username
from services.mqttadmin.files import read_text, replace_file
from services.mqttadmin.passwd import (
    MIN_PASSWORD_LENGTH,
    PasswordFile,
    generate_password,
    hash_password,
)

PASSWORD_FILE_MODE = 0o600
ACL_FILE_MODE = 0o644  # for a new file; an existing one keeps its mode


@dataclass(frozen=True, slots=True)
class Account:
    """What was written for one account, and the password to hand over."""

    section: Section
    password: str
    generated: bool  # False when the caller chose the password
    replaced: bool  # the account existed and was re-keyed
    password_file: Path
    acl_file: Path

    @property
    def username(self) -> str:
        """Return the account's user name."""
        return self.section.username


def add_device(
    asset_id: str,
    *,
    topics: Topics,
    password_file: Path,
    acl_file: Path,
    password: str | None = None,
) -> Account:
    """Let the device of ``asset_id`` publish its own raw topics, and nothing else."""
    validate_asset_id(asset_id)
    acl = AclFile.parse(read_text(acl_file))
    foreign = [
        s.username
        for s in acl.sections
        if s.kind != "manual" and any(_outside(topic, topics.base) for topic in s.topics())
    ]
    if foreign:
        raise MqttAdminError(
            f"{acl_file} grants topics outside base {topics.base!r} to "
            f"{', '.join(sorted(foreign))}: rewrite them with `cbm mqtt add-user` "
            "(or add-device) under this base first, or the device's data would never "
            "reach the workers"
        )
    return _store(
        Section.for_device(asset_id, topics),
        acl,
        password=password,
        password_file=password_file,
        acl_file=acl_file,
    )


def add_user(
    username: str,
    role: Role,
    *,
    topics: Topics,
    password_file: Path,
    acl_file: Path,
    password: str | None = None,
) -> Account:
    """Give a stack account (worker, simulator, read-only tool) exactly its role's rights."""
    validate_username(username)
    acl = AclFile.parse(read_text(acl_file))
    return _store(
        Section.for_role(username, role, topics),
        acl,
        password=password,
        password_file=password_file,
        acl_file=acl_file,
    )


def _store(
    section: Section,
    acl: AclFile,
    *,
    password: str | None,
    password_file: Path,
    acl_file: Path,
) -> Account:
    name, kind = section.username, section.kind
    passwords = PasswordFile.parse(read_text(password_file))
    existing = acl.sections_of(name)
    for other in existing:
        if other.kind != kind:
            what = (
                "has a section edited by hand" if other.kind == "manual" else f"is a {other.kind}"
            )
            raise MqttAdminError(f"{name!r} {what} in {acl_file}; refusing to change it")
    if not existing and passwords.get(name) is not None:
        raise MqttAdminError(
            f"{name!r} is in {password_file} but has no section in {acl_file}: "
            "remove that entry or give it a section by hand"
        )
    generated = password is None
    secret = generate_password() if password is None else _checked(password)
    if not acl.header and not acl.sections:
        acl.header = HEADER.splitlines()
    acl.put(section)
    replaced = passwords.set(name, hash_password(secret))
    replace_file(acl_file, acl.render(), mode=_mode_of(acl_file, ACL_FILE_MODE))
    replace_file(password_file, passwords.render(), mode=PASSWORD_FILE_MODE)
    return Account(section, secret, generated, replaced, password_file, acl_file)


def _checked(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise MqttAdminError(
            f"a chosen password needs at least {MIN_PASSWORD_LENGTH} characters "
            "(leave it out to get a random one)"
        )
    if "\0" in password or "\n" in password:
        raise MqttAdminError("a password cannot contain NUL or newline characters")
    return password


def _outside(topic: str, base: str) -> bool:
    return topic != "#" and not topic.startswith(f"{base}/")


def _mode_of(path: Path, default: int) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return default
