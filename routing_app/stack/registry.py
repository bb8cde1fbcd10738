"""Apicurio Registry 3.x with its Confluent-compatible API, persisted in an H2 file.

Schema ids end up inside every Avro record on the topics, so the registry must keep them
across `stack down` / `stack up`: the default in-memory H2 is replaced by a file database
under the state folder.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from routing_app.config import Settings
from routing_app.stack.errors import StackError
from routing_app.stack.process import ManagedProcess, wait_answering

NAME = "registry"
READY_TIMEOUT_S = 120.0
CCOMPAT_PATH = "/apis/ccompat/v7"
DEFAULT_COMPATIBILITY = "BACKWARD"


def db_path(settings: Settings) -> Path:
    """H2 adds ``.mv.db`` to this."""
    return (settings.state_dir / "registry" / "db").resolve()


def storage_description(settings: Settings) -> str:
    return f"H2 file {db_path(settings)}.mv.db (kept across down/up)"


def process(settings: Settings) -> ManagedProcess:
    return ManagedProcess(NAME, settings.state_dir)


def argv(settings: Settings, java: str, management_port: int) -> list[str]:
    work = (settings.state_dir / "registry").resolve()
    return [
        java,
        f"-Xmx{settings.registry_heap}",
        "-Djava.awt.headless=true",
        f"-Dquarkus.http.port={settings.registry_port}",
        "-Dquarkus.http.host=127.0.0.1",
        # The health/metrics interface defaults to *:9000; two stacks (demo + tests) would
        # collide there, so it gets a free loopback port of its own.
        f"-Dquarkus.management.port={management_port}",
        "-Dquarkus.management.host=127.0.0.1",
        f"-Dapicurio.datasource.url=jdbc:h2:file:{db_path(settings)}",
        # The default pool (20..100 connections) is sized for a server, not a laptop.
        "-Dapicurio.datasource.jdbc.initial-size=2",
        "-Dapicurio.datasource.jdbc.min-size=2",
        "-Dapicurio.datasource.jdbc.max-size=10",
        # Default global rule; `up` also PUTs it, which stores it in the database.
        f"-Dapicurio.rules.global.compatibility={DEFAULT_COMPATIBILITY}",
        f"-Dapicurio.import.work-dir={work}",
        f"-Dapicurio.storage.snapshot.location={work}",
        "-jar",
        "quarkus-run.jar",
    ]


def local_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.registry_port}{CCOMPAT_PATH}"


def _request(
    url: str, method: str = "GET", body: dict[str, str] | None = None, timeout_s: float = 5.0
) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    with urllib.request.urlopen(req, timeout=timeout_s) as response:
        return json.loads(response.read() or b"null")


def answers(url: str, timeout_s: float = 3.0) -> bool:
    """True when ``url`` (a Confluent-compatible base URL) lists subjects."""
    try:
        return isinstance(_request(f"{url.rstrip('/')}/subjects", timeout_s=timeout_s), list)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def set_global_compatibility(url: str, level: str = DEFAULT_COMPATIBILITY) -> None:
    try:
        _request(f"{url.rstrip('/')}/config", method="PUT", body={"compatibility": level})
    except (OSError, ValueError, urllib.error.URLError) as exc:
        raise StackError(f"Setting the registry's global compatibility at {url} failed: {exc}") from exc


def global_compatibility(url: str) -> str | None:
    try:
        reply = _request(f"{url.rstrip('/')}/config")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    if isinstance(reply, dict):
        level = reply.get("compatibilityLevel") or reply.get("compatibility")
        return str(level) if level else None
    return None


def wait_ready(settings: Settings, pid: int | None, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Blocks until the registry answers; returns the seconds waited."""
    return wait_answering(
        process(settings),
        pid,
        "Apicurio Registry",
        settings.registry_url,
        lambda: answers(settings.registry_url, timeout_s=2.0),
        timeout_s,
    )
