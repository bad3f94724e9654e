"""Hash passwords as Mosquitto 2.0 checks them, and edit its password file.

One line per user, ``$7$`` being Mosquitto's PBKDF2-HMAC-SHA512::

    username:$7$<iterations>$<base64 of a 12-byte salt>$<base64 of the 64-byte hash>

The broker drops (with an error in its log, not at start-up) any entry whose
salt is not exactly 12 bytes or whose hash is not exactly 64, so both sizes
are fixed here. ``mosquitto_passwd`` (2.0) writes the same format with 101
iterations; it is not needed at run time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass

SALT_BYTES = 12
HASH_BYTES = 64
# Mosquitto runs single-threaded and hashes on every CONNECT, inside its event
# loop: after a broker restart every device reconnects at once. At 1,000
# iterations (~1 ms each) a thousand devices cost the broker about a second; at
# 100,000 they would stall all traffic for over a minute. Stretching protects
# guessable passwords, and ours are not: generated ones carry 192 random bits
# and chosen ones must be at least MIN_PASSWORD_LENGTH characters.
ITERATIONS = 1_000
MIN_PASSWORD_LENGTH = 16

_ENTRY = re.compile(
    r"\$7\$(?P<iterations>[1-9][0-9]*)\$(?P<salt>[A-Za-z0-9+/=]+)\$(?P<hash>[A-Za-z0-9+/=]+)"
)


def generate_password() -> str:
    """Return a fresh random password: 32 URL-safe characters, 192 bits."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """Return the ``$7$`` PBKDF2-SHA512 encoding of ``password`` with a random salt."""
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise ValueError(f"Mosquitto accepts only {SALT_BYTES}-byte salts")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Return whether ``password`` matches a ``$7$`` encoding, as the broker decides it."""
    match = _ENTRY.fullmatch(encoded.strip())
    if match is None:
        return False
    try:
        salt = base64.b64decode(match["salt"], validate=True)
        expected = base64.b64decode(match["hash"], validate=True)
    except binascii.Error:
        return False
    if len(salt) != SALT_BYTES or len(expected) != HASH_BYTES:
        return False
    actual = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), salt, int(match["iterations"]), HASH_BYTES
    )
    return hmac.compare_digest(actual, expected)


@dataclass
class PasswordFile:
    """The lines of a Mosquitto password file, edited by username."""

    lines: list[str]

    @classmethod
    def parse(cls, text: str) -> PasswordFile:
        """Read the file's text; lines that are not ours are kept as they are."""
        return cls([line for line in text.splitlines() if line.strip()])

    def usernames(self) -> list[str]:
        """Return the usernames in file order, as the broker reads them."""
        return [name for name in map(_username, self.lines) if name is not None]

    def get(self, username: str) -> str | None:
        """Return the stored hash of ``username``, or None."""
        for line in self.lines:
            if _username(line) == username:
                return line.split(":", 1)[1].strip()
        return None

    def set(self, username: str, encoded: str) -> bool:
        """Store ``encoded`` for ``username`` in place of its entries; return whether any existed.

        The first entry is replaced where it stands and any duplicate dropped:
        with two lines for one name, which one the broker uses is unspecified.
        """
        entry = f"{username}:{encoded}"
        lines: list[str] = []
        replaced = False
        for line in self.lines:
            if _username(line) != username:
                lines.append(line)
            elif not replaced:
                lines.append(entry)
                replaced = True
        self.lines = lines if replaced else [*lines, entry]
        return replaced

    def render(self) -> str:
        """Return the file's text."""
        return "".join(f"{line}\n" for line in self.lines)


def _username(line: str) -> str | None:
    # The broker skips comments and lines without a colon, and trims blanks
    # around the name.
    if line.startswith("#") or ":" not in line:
        return None
    return line.split(":", 1)[0].strip()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
