"""Read and atomically replace the broker's small files, keeping their owner."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cbm.errors import MqttAdminError


def read_text(path: Path) -> str:
    """Return the file's text, or an empty string if it does not exist yet."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise MqttAdminError(f"cannot read {path}: {exc.strerror}") from None


def replace_file(path: Path, text: str, *, mode: int) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    The broker may read the file at any moment (start, SIGHUP), so it must never
    see half of it. The new file gets ``mode`` and the previous file's owner:
    Mosquitto drops root before it reads its files, so a file the broker's user
    owned must still be its own after root rewrote it.
    """
    if not path.parent.is_dir():
        raise MqttAdminError(f"cannot write {path}: directory {path.parent} does not exist")
    try:
        previous: os.stat_result | None = path.stat()
    except FileNotFoundError:
        previous = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise MqttAdminError(f"cannot write {path}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            if previous is not None:
                _keep_owner(handle.fileno(), previous, path)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MqttAdminError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _keep_owner(fd: int, previous: os.stat_result, path: Path) -> None:
    if previous.st_uid == os.geteuid():
        with contextlib.suppress(PermissionError):  # the group is a courtesy at 0600/0644
            os.fchown(fd, -1, previous.st_gid)
        return
    try:
        os.fchown(fd, previous.st_uid, previous.st_gid)
    except PermissionError:
        # Renaming our copy over it would hand the file to us and lock the broker out.
        raise MqttAdminError(
            f"{path} belongs to uid {previous.st_uid} (the broker's user?): run this as "
            "root or as that user so the rewritten file keeps its owner"
        ) from None
