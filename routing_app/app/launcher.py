"""Starts worker processes (`faust -A routing_app.app worker`) for the demo, benchmarks and tests."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routing_app.config import ENV_PREFIX, Settings
from routing_app.stack.process import free_port

_BIN = Path(sys.executable).parent
_READY_LINE = "[^Worker]: Ready"


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process use exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if value is not None:
            env[ENV_PREFIX + f.name.upper()] = str(value)
    # The child must reach the same cluster even where these are derived (the local stack).
    env[ENV_PREFIX + "BOOTSTRAP_SERVERS"] = settings.bootstrap
    env[ENV_PREFIX + "SCHEMA_REGISTRY_URL"] = settings.registry_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    web_port: int
    log_path: Path
    web_host: str = "127.0.0.1"  # where its web server listens (settings.web_bind)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.web_host}:{self.web_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self) -> bool:
        if _READY_LINE not in self.log():
            return False
        try:
            self.get("/writer/stats")
        except OSError:
            return False
        return True

    def wait_ready(self, timeout_s: float = 90.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                return False
            if self.ready():
                return True
            time.sleep(0.3)
        return False

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to leave its group cleanly."""
        if self.alive:
            self.process.kill()
            self.process.wait(10)


def launch_worker(
    settings: Settings, workdir: Path, web_port: int | None = None, **env: str
) -> WorkerProcess:
    """Starts a worker in ``workdir`` (its data folder and log live there); does not wait."""
    port = web_port or free_port()
    # Every interface includes loopback; a single address is the only one that answers.
    host = "127.0.0.1" if settings.web_bind in ("0.0.0.0", "::") else settings.web_bind
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(_BIN / "faust"),
                "-A",
                "routing_app.app",
                "worker",
                "-l",
                "info",
                "--web-port",
                str(port),
                "--web-host",
                host,
            ],
            cwd=workdir,
            env=settings_env(settings, ROUTING_WEB_PORT=str(port), **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(process, port, log_path, host)
