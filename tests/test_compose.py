"""docker-compose.yml is checked structurally (no Docker engine is needed or used)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from routing_app.config import CONFIG_FILE_ENV, ENV_PREFIX, Settings

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("topics", "worker-1", "worker-2", "demo-traffic")
WORKERS = ("worker-1", "worker-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        # The "NAME=value" list form.
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): str(v) for k, v in raw.items()}


def _command(service: dict[str, Any]) -> list[str]:
    raw = service.get("command", [])
    return raw.split() if isinstance(raw, str) else [str(part) for part in raw]


def test_services_present(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "registry", *APP_SERVICES} <= set(services)


def test_images_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image (app services tag what they build)"
        repo, _, tag = str(image).rpartition(":")
        assert repo and tag and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} is not pinned"
    assert services["kafka"]["image"] == "apache/kafka:4.4.0"
    assert services["registry"]["image"] == "apicurio/apicurio-registry:3.3.3"


def test_app_services_build_from_repo_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert re.search(r"pip install \.", dockerfile)
    for name in APP_SERVICES:
        build = services[name].get("build")
        context = build.get("context") if isinstance(build, dict) else build
        assert context == ".", f"{name} is not built from the repo root"


def test_depends_on_targets_exist(services: dict[str, dict[str, Any]]) -> None:
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        targets = depends if isinstance(depends, list) else list(depends)
        for target in targets:
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            if isinstance(depends, dict):
                condition = depends[target].get("condition", "service_started")
                assert condition in conditions, f"{name} -> {target}: {condition}"
                if condition == "service_healthy":
                    assert "healthcheck" in services[target], f"{target} has no healthcheck"


def test_startup_order(services: dict[str, dict[str, Any]]) -> None:
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in WORKERS:
        condition = services[name]["depends_on"]["topics"]["condition"]
        assert condition == "service_completed_successfully"


def test_worker_commands(services: dict[str, dict[str, Any]]) -> None:
    web_ports = set()
    for name in WORKERS:
        command = _command(services[name])
        assert command[:4] == ["faust", "-A", "routing_app.app", "worker"], command
        assert "--web-port" in command
        web_ports.add(command[command.index("--web-port") + 1])
    assert len(web_ports) == len(WORKERS), "workers must not share a web port"
    assert _command(services["topics"]) == ["routing-app", "topics", "ensure"]
    assert _command(services["demo-traffic"]) == ["routing-app", "demo", "traffic"]


def test_app_env_names_are_settings(services: dict[str, dict[str, Any]]) -> None:
    known = {ENV_PREFIX + f.name.upper() for f in fields(Settings)} | {CONFIG_FILE_ENV}
    for name in APP_SERVICES:
        env = _env(services[name])
        routing_vars = {key for key in env if key.startswith(ENV_PREFIX)}
        assert routing_vars <= known, f"{name}: unknown {sorted(routing_vars - known)}"
        assert env["ROUTING_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["ROUTING_SCHEMA_REGISTRY_URL"] == "http://registry:8080/apis/ccompat/v7"


def test_kafka_kraft_without_auto_topic_creation(services: dict[str, dict[str, Any]]) -> None:
    env = _env(services["kafka"])
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].lower() == "false"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    listener_names = {part.split("://")[0] for part in env["KAFKA_LISTENERS"].split(",")}
    mapped = {part.split(":")[0] for part in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    assert listener_names <= mapped
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listener_names


def _port_numbers(spec: Any) -> list[int]:
    if isinstance(spec, dict):
        return [int(spec["target"])] + ([int(spec["published"])] if "published" in spec else [])
    parts = str(spec).split("/")[0].split(":")
    # "host:container", "ip:host:container" or just "container".
    return [int(p) for p in parts if p.isdigit()]


def _host_ip(spec: Any) -> str | None:
    """The host address a port is published on; None means every interface."""
    if isinstance(spec, dict):
        return str(spec["host_ip"]) if spec.get("host_ip") else None
    text = str(spec).split("/")[0]
    if text.startswith("["):  # "[::1]:8080:80"
        return text[1 : text.index("]")]
    parts = text.split(":")
    return parts[0] if len(parts) == 3 else None


def test_ports_valid(services: dict[str, dict[str, Any]]) -> None:
    published: list[int] = []
    for name, service in services.items():
        for spec in service.get("ports", []):
            numbers = _port_numbers(spec)
            assert numbers, f"{name}: cannot read port {spec!r}"
            assert all(0 < n < 65536 for n in numbers), f"{name}: bad port {spec!r}"
            if len(numbers) > 1:
                published.append(numbers[0])
    assert len(published) == len(set(published)), f"host ports clash: {published}"


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("kafka", "registry", *WORKERS):
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"


def test_ports_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    """Kafka, the registry and the workers' web views have no authentication: no port may be
    reachable from other hosts."""
    for name, service in services.items():
        for spec in service.get("ports", []):
            assert _host_ip(spec) in ("127.0.0.1", "::1"), (
                f"{name} publishes {spec!r} on every interface; publish it on 127.0.0.1"
            )


def test_workers_listen_where_their_published_port_reaches_them(services: dict[str, dict[str, Any]]) -> None:
    # Inside its container a worker bound to 127.0.0.1 (the default) is out of reach of port
    # publishing, and its healthcheck alone would still pass.
    for name in WORKERS:
        assert _env(services[name]).get("ROUTING_WEB_BIND") == "0.0.0.0", name
