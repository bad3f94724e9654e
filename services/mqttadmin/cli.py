"""The ``cbm mqtt`` command group: add devices and stack accounts to the broker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from cbm.settings import Settings
from cbm.topics import Topics
from services.mqttadmin.accounts import Account, add_device, add_user
from services.mqttadmin.acl import ROLES, Role

DEFAULT_PASSWORD_FILE = Path("mosquitto/passwd")
DEFAULT_ACL_FILE = Path("mosquitto/acl")
RELOAD_HINT = "apply with a reload: docker compose kill -s SIGHUP mosquitto (or kill -HUP <pid>)"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``mqtt`` group and its verbs to the ``cbm`` command's subparsers."""
    mqtt = subparsers.add_parser("mqtt", help="broker accounts: devices, workers, tools")
    verbs = mqtt.add_subparsers(title="mqtt")

    device = verbs.add_parser(
        "add-device",
        help="let one asset's device publish its raw data (again: new password)",
        description="Create or re-key the account of a device; its user name is the asset id.",
    )
    device.add_argument("asset", help="asset id, also the device's MQTT user name")
    _file_options(device)
    device.set_defaults(handler=_add_device)

    user = verbs.add_parser(
        "add-user",
        help="create or re-key a worker, simulator or read-only account",
        description="Create or re-key a stack account with exactly its role's rights.",
    )
    user.add_argument(
        "name", help="MQTT user name (the stack uses the role's name; Grafana 'grafana')"
    )
    user.add_argument("--role", required=True, choices=ROLES)
    _file_options(user)
    user.set_defaults(handler=_add_user)


def _file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file",
        type=Path,
        default=DEFAULT_PASSWORD_FILE,
        help=f"Mosquitto password file to update (default: {DEFAULT_PASSWORD_FILE})",
    )
    parser.add_argument(
        "--acl-file",
        type=Path,
        default=DEFAULT_ACL_FILE,
        help=f"Mosquitto ACL file to update (default: {DEFAULT_ACL_FILE})",
    )
    parser.add_argument(
        "--password",
        default=None,
        help="use this password instead of a random one (it ends up in shell history)",
    )


def _add_device(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    account = add_device(
        args.asset,
        topics=Topics(settings.base_topic),
        password_file=args.password_file,
        acl_file=args.acl_file,
        password=args.password,
    )
    out.write(describe_device(account, settings))
    return 0


def _add_user(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    role: Role = args.role
    account = add_user(
        args.name,
        role,
        topics=Topics(settings.base_topic),
        password_file=args.password_file,
        acl_file=args.acl_file,
        password=args.password,
    )
    out.write(describe_user(account, role))
    return 0


def describe_device(account: Account, settings: Settings) -> str:
    """Return what the device's installer needs to configure it."""
    mqtt = settings.mqtt
    vibration, temperature = account.section.topics()
    tls = f"on, CA {mqtt.ca_file}" if mqtt.tls and mqtt.ca_file else "on" if mqtt.tls else "off"
    lines = [
        _changed(account, "device"),
        RELOAD_HINT,
        "",
        "Configure the device with:",
        f"  broker      {mqtt.host}:{mqtt.port} (TLS {tls}; as the workers see it)",
        f"  username    {account.username}",
        f"  password    {_password(account)}",
        f"  client id   a fixed one, e.g. {account.username}",
        "              (two clients with one id keep evicting each other)",
        f"  publish     {vibration}    one vibration window per message",
        f"              {temperature}  one temperature reading per message",
        "  QoS         1, MQTT 5 preferred: a refused publish comes back as reason 0x87",
        "              (MQTT 3.1.1 acknowledges and drops it silently)",
        "  payloads    JSON or binary, see docs/asyncapi.yaml (messages vibrationJson,",
        "              vibrationBinary, temperatureJson, temperatureBinary)",
        "  nothing     else: no other topic, and it receives no messages",
        "",
    ]
    return "\n".join(lines)


def describe_user(account: Account, role: Role) -> str:
    """Return what the account's operator needs: its rights and its credentials."""
    rules = [line for line in account.section.lines if line.startswith("topic ")]
    lines = [
        _changed(account, f"{role} account"),
        RELOAD_HINT,
        "",
        f"  username    {account.username}",
        f"  password    {_password(account)}",
        *(f"  rights      {line.removeprefix('topic ')}" for line in rules),
    ]
    if role != "readonly":
        lines += [
            "",
            "Run the worker with:",
            f"  CBM_MQTT__USERNAME={account.username}",
            "  CBM_MQTT_PASSWORD=<the password above>",
        ]
    return "\n".join([*lines, ""])


def _changed(account: Account, what: str) -> str:
    verb = "re-keyed" if account.replaced else "added"
    return f"{what} {account.username!r} {verb} in {account.password_file} and {account.acl_file}"


def _password(account: Account) -> str:
    if account.generated:
        return f"{account.password}   (shown once: only its hash is stored)"
    return "(the one you gave)"
