"""The project's exception hierarchy: every error the library raises on purpose."""

from __future__ import annotations


class CbmError(Exception):
    """Base class of every error raised on purpose by the pipeline."""


class SettingsError(CbmError):
    """A setting is missing or invalid; the message names the key."""


class ContractError(CbmError):
    """A payload or topic does not follow the documented contract.

    ``reason`` is a short machine-readable code (it labels metrics and dead
    letters); the message says what was wrong for a human.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class PublishRefusedError(CbmError):
    """The broker refused a publish (e.g. the ACL forbids the topic): it did not arrive."""


class MigrationError(CbmError):
    """The database schema cannot be brought to the expected version."""


class MqttAdminError(CbmError):
    """A broker account or file cannot be changed as asked; the message says why."""


class ModelError(CbmError):
    """A model artifact is missing, malformed or does not fit the running code."""
