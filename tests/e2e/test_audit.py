"""`routing-app audit` on the real stack: a healthy history verifies, a corrupted one does not.

Uses its own routing topics and its own worker: it corrupts its routes topic on purpose, which
must never happen to the session worker's topics that other tests share.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from routing_app.codec import registry_client
from routing_app.config import Settings
from routing_app.connection import client_settings
from routing_app.routes import Route, RouteCodec
from routing_app.topics import create_topic
from tests.e2e.support import Worker, cli, fresh_routing_settings, start_writer, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def audit_settings(stack_settings: Settings) -> Settings:
    return fresh_routing_settings(stack_settings, "e2e.audit")


@pytest.fixture(scope="module")
def audit_worker(audit_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    # A short drain limit bounds the strict move below, whatever the producers do.
    w = start_writer(
        audit_settings, Path(tmp_path_factory.mktemp("audit-worker")), ROUTING_DRAIN_TIMEOUT_MS="5000"
    )
    assert w.alive, f"worker exited:\n{w.log()[-3000:]}"
    yield w
    w.stop()


def run(settings: Settings, *args: str) -> Any:
    done = cli(settings, *args)
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def audit_json(settings: Settings, *args: str, expect: int = 0) -> Any:
    done = cli(settings, "audit", *args, "--json")
    assert done.returncode == expect, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def test_audit_answers_where_and_why_and_verify_catches_corruption(
    audit_settings: Settings, audit_worker: Worker
) -> None:
    s = audit_settings
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    create_topic(s.bootstrap, topic, 8)

    run(s, "routes", "pin", topic, "acme", "-p", "3", "--mode", "relaxed", "--reason", "noisy since 10:02")
    time.sleep(0.5)
    between = int(time.time() * 1000)
    time.sleep(0.5)
    run(s, "routes", "pin", topic, "acme", "-p", "1", "-p", "4", "-p", "6", "--mode", "relaxed")
    run(s, "routes", "unpin", topic, "acme")
    # A strict move: a drain (draining, then active with the same epoch) where the writer has
    # ordering-safe moves; a plain active route otherwise.
    run(s, "routes", "pin", topic, "bigco", "-p", "2")
    history = wait_for(
        lambda: (h := audit_json(s, "tenant", "bigco")["history"]) and h[-1]["status"] != "draining" and h,
        timeout=30,
        what="bigco's move to end",
    )
    epochs = {step["to_epoch"] for step in history if step["changes_route"]}
    assert epochs == {1}, history  # the drain's completion kept the draining epoch

    # Healthy: the routes topic is the replay of the events topic.
    done = cli(s, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout
    report = audit_json(s, "verify")
    assert report["ok"] and report["keys"] == 2 and report["discrepancies"] == []
    assert report["route_records"] == report["linked_records"] >= 4

    # Where was acme between the first and the second pin, and why?
    [placement] = audit_json(s, "at", str(between), "--tenant", "acme", "--topic", topic)["routes"]
    assert placement["partitions"] == [3]
    assert placement["reason"] == "operator pin (noisy since 10:02)"
    table = cli(s, "audit", "at", str(between), "--tenant", "acme")
    assert table.returncode == 0 and "noisy since 10:02" in table.stdout, table.stdout

    story = audit_json(s, "tenant", "acme")
    steps = [(h["action"], h["placement"], h["to_epoch"]) for h in story["history"]]
    assert steps == [("pin", [3], 1), ("pin", [1, 4, 6], 2), ("unpin", None, 3)]
    assert all(h["route_offset"] is not None for h in story["history"])
    assert story["current"][0]["hashed"] is True

    replay = audit_json(s, "replay", "--topic", topic)
    assert [(e["tenant"], e["action"]) for e in replay["timeline"]][:3] == [
        ("acme", "pin"),
        ("acme", "pin"),
        ("acme", "unpin"),
    ]

    # Corrupt the routes topic: a route no event wrote, and a bumped epoch on bigco.
    codec = RouteCodec(registry_client(s.registry_url), s.routes_topic)
    producer = Producer(client_settings(s.bootstrap))
    ghost = Route(topic, "ghost", (5,), 1, reason="written by hand")
    bumped = Route(topic, "bigco", (2,), 7, reason="written by hand")
    for route in (ghost, bumped):
        producer.produce(
            s.routes_topic, key=codec.encode_key(route.topic, route.tenant), value=codec.encode(route)
        )
    assert producer.flush(10) == 0
    # The running writer repairs both (tests/e2e/test_forged_routes.py) and says so on the events
    # topic; what verify must still report is the forgery itself.
    repairs = wait_for(
        lambda: (
            len(
                r := [
                    e
                    for e in audit_json(s, "replay", "--topic", topic)["timeline"]
                    if e["action"] == "repair"
                ]
            )
            == 2
            and r
        ),
        timeout=30,
        what="the writer's two repairs",
    )
    assert sorted(e["tenant"] for e in repairs) == ["bigco", "ghost"], repairs

    done = cli(s, "audit", "verify", "--settle", "0")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{topic}/ghost" in done.stdout and f"{topic}/bigco" in done.stdout
    assert "FAILED" in done.stderr
    report = audit_json(s, "verify", "--settle", "0", expect=1)
    found = {(d["key"], d["kind"]) for d in report["discrepancies"]}
    # The forged records are reported; the running writer's repair records are not (the
    # tombstones are linked to its repair events, its route written again is a repeat), and
    # after the repair the table is the replay of the events again.
    assert sorted(found) == [
        (f"{topic}/bigco", "route-without-event"),
        (f"{topic}/ghost", "route-without-event"),
    ], report
    repaired = [d for d in report["discrepancies"] if "the writer repaired it" in d["found"]]
    assert len(repaired) == 2, report
