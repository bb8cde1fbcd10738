"""The secure local stack's users and passwords (`routing-app stack up --secure`).

Clients log in with SASL/SCRAM-SHA-512 over plain TCP on 127.0.0.1 (SASL_PLAINTEXT): the
passwords are never sent, but the records are not encrypted; the stack is for one machine.
Every principal's password is random, made once and kept in ``<state_dir>/credentials.json``
(mode 0600), with one env file per principal next to it (``<state_dir>/env/<user>.env``) that
a shell can ``source`` or ``set -a; . file`` to run as that principal.

``credentials.json``::

    {"version": 1,
     "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
     "users": {"admin": "<password>", "routing-worker": "...", "routing-operator": "...",
               "routing-producer": "..."},
     "controller": {"username": "controller", "password": "...", "sasl_mechanism": "PLAIN"}}

The controller user exists only on the controller listener (KRaft keeps SCRAM credentials in
its metadata log, which controllers must reach before they could check one), in a static JAAS
entry of each node's server.properties (also 0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from routing_app.config import KafkaAccess, Settings
from routing_app.stack.errors import StackError

SECURITY_PROTOCOL = "SASL_PLAINTEXT"
SCRAM_MECHANISM = "SCRAM-SHA-512"
CONTROLLER_MECHANISM = "PLAIN"

ADMIN = "admin"
WORKER = "routing-worker"
OPERATOR = "routing-operator"
PRODUCER = "routing-producer"
# SCRAM users every secure stack has; admin is a super user (the stack itself, inter-broker
# traffic, `topics ensure` and the tests run as admin), the others get the ACLs of
# routing_app.topics.acls.
USERS = (ADMIN, WORKER, OPERATOR, PRODUCER)
CONTROLLER_USER = "controller"

FILE_NAME = "credentials.json"
ENV_DIR = "env"
_VERSION = 1


def principal(user: str) -> str:
    return f"User:{user}"


def _password() -> str:
    # Hex: nothing that StorageTool's --add-scram parser ([name=..,password=..]) or a JAAS
    # string ("...") would read as syntax.
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Credentials:
    """The secure stack's passwords: ``users`` (SCRAM) and the controller listener's."""

    users: Mapping[str, str] = field(repr=False)
    controller_password: str = field(repr=False)
    controller_user: str = CONTROLLER_USER

    def password(self, user: str) -> str:
        try:
            return self.users[user]
        except KeyError:
            raise StackError(
                f"the secure stack has no user {user!r}; its users are {', '.join(sorted(self.users))}"
            ) from None

    def settings_values(self, user: str) -> dict[str, str]:
        """``Settings`` fields that make a process log in as ``user``
        (``settings.replace(**values)``)."""
        values = {
            "security_protocol": SECURITY_PROTOCOL,
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_username": user,
            "sasl_password": self.password(user),
        }
        if user == WORKER:
            # The writer applies commands issued by these only (the CLI signs with its principal).
            values["operator_principals"] = f"{principal(OPERATOR)},{principal(ADMIN)}"
        return values

    def security(self, user: str) -> dict[str, str]:
        """librdkafka's settings for ``user`` (security.protocol, sasl.*)."""
        return {
            "security.protocol": SECURITY_PROTOCOL,
            "sasl.mechanism": SCRAM_MECHANISM,
            "sasl.username": user,
            "sasl.password": self.password(user),
        }

    def access(self, bootstrap: str, user: str = ADMIN) -> KafkaAccess:
        return KafkaAccess(bootstrap, tuple(sorted(self.security(user).items())))

    def settings_for(self, settings: Settings, user: str) -> Settings:
        return settings.replace(**self.settings_values(user))

    def by_principal(self) -> dict[str, dict[str, str]]:
        """ "User:<name>" -> Settings values, for every SCRAM user."""
        return {principal(user): self.settings_values(user) for user in self.users}

    def env_lines(self, user: str) -> list[str]:
        return [f"ROUTING_{name.upper()}={value}" for name, value in self.settings_values(user).items()]

    def to_json(self) -> dict[str, object]:
        return {
            "version": _VERSION,
            "security_protocol": SECURITY_PROTOCOL,
            "sasl_mechanism": SCRAM_MECHANISM,
            "users": dict(self.users),
            "controller": {
                "username": self.controller_user,
                "password": self.controller_password,
                "sasl_mechanism": CONTROLLER_MECHANISM,
            },
        }


def credentials_file(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def env_file(state_dir: Path, user: str) -> Path:
    return state_dir / ENV_DIR / f"{user}.env"


def load(state_dir: Path) -> Credentials | None:
    """The state folder's credentials; None when it has none. A file that cannot be read is an
    error (the secure stack's data is useless without it), never silently replaced."""
    path = credentials_file(state_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StackError(f"cannot read the secure stack's credentials in {path}: {exc}") from exc
    try:
        users = {str(name): str(password) for name, password in dict(data["users"]).items()}
        controller = dict(data["controller"])
        return Credentials(
            users, str(controller["password"]), str(controller.get("username", CONTROLLER_USER))
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StackError(
            f"the secure stack's credentials in {path} are damaged ({exc!r}); "
            "run `routing-app stack down` and remove the secure stack's data "
            "(the kafka-secure* folders) and that file to start afresh"
        ) from exc


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` to a file only its owner can read (passwords, JAAS settings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: never readable by others, even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)  # an older file keeps its mode through O_TRUNC


def load_or_create(state_dir: Path) -> Credentials:
    """The state folder's credentials, made (and saved) on first use; users added to USERS
    since get a password too. Env files are (re)written."""
    found = load(state_dir)
    if found is None:
        found = Credentials({user: _password() for user in USERS}, _password())
    missing = [user for user in USERS if user not in found.users]
    if missing:
        found = Credentials(
            {**found.users, **{user: _password() for user in missing}},
            found.controller_password,
            found.controller_user,
        )
    path = credentials_file(state_dir)
    text = json.dumps(found.to_json(), indent=2) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_private(path, text)
    write_env_files(state_dir, found)
    return found


def write_env_files(state_dir: Path, credentials: Credentials) -> dict[str, Path]:
    """One ``ROUTING_*`` env file per user; returns user -> path."""
    paths = {}
    for user in credentials.users:
        path = env_file(state_dir, user)
        text = f"# Kafka principal {principal(user)} of the secure local stack\n" + "".join(
            f"{line}\n" for line in credentials.env_lines(user)
        )
        if not path.is_file() or path.read_text() != text:
            write_private(path, text)
        paths[user] = path
    return paths


# SCRAM's iteration count for users created after the storage format (Kafka's minimum and
# StorageTool's default).
SCRAM_ITERATIONS = 4096


def ensure_users(admin_access: KafkaAccess, credentials: Credentials, timeout: float = 30.0) -> list[str]:
    """Creates the SCRAM users of ``credentials`` that the cluster does not have (those added
    since its storage was formatted with the others); returns their names. Existing users keep
    their password: the format gave them the ones in the file."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    from routing_app.connection import admin_client

    admin = admin_client(admin_access)
    mechanism = ScramMechanism.SCRAM_SHA_512
    missing = []
    described_futures = admin.describe_user_scram_credentials(
        list(credentials.users), request_timeout=timeout
    )
    assert isinstance(described_futures, dict)  # one future per user named
    for user, future in described_futures.items():
        try:
            described = future.result(timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not (isinstance(error, KafkaError) and error.code() == KafkaError.RESOURCE_NOT_FOUND):
                raise StackError(
                    f"cannot read the SCRAM users of the secure stack at {admin_access}: {exc}"
                ) from exc
            missing.append(user)
            continue
        if not any(info.mechanism == mechanism for info in described.scram_credential_infos):
            missing.append(user)
    if not missing:
        return []
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            user, ScramCredentialInfo(mechanism, SCRAM_ITERATIONS), credentials.password(user).encode()
        )
        for user in missing
    ]
    for user, future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            raise StackError(
                f"cannot create the SCRAM user {user!r} on the secure stack at {admin_access}: {exc}"
            ) from exc
    return missing
