"""Password hashes in Mosquitto 2.0's `$7$` format, and the password file."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from services.mqttadmin.passwd import (
    HASH_BYTES,
    ITERATIONS,
    SALT_BYTES,
    PasswordFile,
    generate_password,
    hash_password,
    verify_password,
)


def test_hash_has_mosquittos_pbkdf2_layout() -> None:
    encoded = hash_password("a long enough password")

    match = re.fullmatch(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", encoded)
    assert match is not None
    assert int(match[1]) == ITERATIONS
    assert len(base64.b64decode(match[2])) == SALT_BYTES == 12
    assert len(base64.b64decode(match[3])) == HASH_BYTES == 64


def test_hash_verifies_its_password_only() -> None:
    encoded = hash_password("correct horse battery staple")

    assert verify_password("correct horse battery staple", encoded)
    assert not verify_password("correct horse battery stapler", encoded)
    assert not verify_password("", encoded)


def test_salt_is_random_and_sized() -> None:
    assert hash_password("same password here") != hash_password("same password here")
    with pytest.raises(ValueError, match="12-byte"):
        hash_password("x", salt=b"short")


# Written by Mosquitto 2.0.11's own `mosquitto_passwd -b passwd dev1 secret`.
MOSQUITTO_PASSWD_LINE = (
    "dev1:$7$101$Dxe5hs3pxYR4b5rR$6IIUog815iTjO/FdiukEhxORF2fwib01E/+YjxlliHcwAUV2gkodiyndc"
    "Ogf0bn9JNvCpIQ+4xQcpzeo8wHmPw=="
)


def test_same_salt_and_iterations_give_mosquitto_passwds_hash() -> None:
    encoded = MOSQUITTO_PASSWD_LINE.split(":", 1)[1]
    salt = base64.b64decode(encoded.split("$")[3])

    assert hash_password("secret", iterations=101, salt=salt) == encoded
    assert verify_password("secret", encoded)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_verifies_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(path), "dev-1", "from the reference tool"],
        check=True,
        capture_output=True,
    )
    name, encoded = path.read_text().strip().split(":", 1)

    assert name == "dev-1"
    assert encoded.startswith("$7$")
    assert verify_password("from the reference tool", encoded)
    assert not verify_password("from the reference tool!", encoded)


def test_rejects_malformed_entries() -> None:
    good = hash_password("some password value")
    short_salt = "$7$101$AAAA$" + good.rsplit("$", 1)[1]

    for broken in ("", "$6$abc$def", "$7$0$AAAAAAAAAAAAAAAA$AAAA", short_salt, good + "!"):
        assert not verify_password("some password value", broken)


def test_generated_passwords_are_long_and_distinct() -> None:
    passwords = {generate_password() for _ in range(100)}

    assert len(passwords) == 100
    assert all(len(p) == 32 and ":" not in p for p in passwords)


def test_password_file_replaces_in_place_and_keeps_the_rest() -> None:
    text = "# managed by hand\nalpha:$7$1$a$b\nbeta:$7$1$c$d\nalpha:$7$1$old$dup\n"
    passwords = PasswordFile.parse(text)

    assert passwords.usernames() == ["alpha", "beta", "alpha"]
    assert passwords.set("alpha", "$7$1$new$hash") is True
    assert passwords.set("gamma", "$7$1$e$f") is False

    assert passwords.render() == (
        "# managed by hand\nalpha:$7$1$new$hash\nbeta:$7$1$c$d\ngamma:$7$1$e$f\n"
    )
    assert passwords.get("beta") == "$7$1$c$d"
    assert passwords.get("delta") is None
