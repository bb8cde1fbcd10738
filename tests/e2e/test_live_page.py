"""The worker's live page in headless Chromium, and the Prometheus metrics of a worker and of a
producer, against the session worker and real decisions."""

from __future__ import annotations

import os
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from routing_app.client import RoutingProducer
from routing_app.config import Settings
from routing_app.metrics import serve_producer_metrics
from routing_app.stack.process import free_port
from tests.e2e.support import Worker, cli, wait_for

pytestmark = pytest.mark.integration

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PINNED_TO = 3


def chromium() -> str:
    """Debian's Chromium (``./dev.sh test`` installs it as root); never skipped silently."""
    path = os.environ.get("ROUTING_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not path:
        pytest.fail(
            "the live page test needs headless Chromium and found none on PATH "
            f"({', '.join(BROWSERS)}): install Debian's package (apt-get install chromium; "
            "./dev.sh test does it when run as root) or set ROUTING_CHROMIUM",
            pytrace=False,
        )
    return path


def producer_conf(settings: Settings) -> dict[str, object]:
    return settings.producer_config(**{"linger.ms": 5})


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@contextmanager
def traffic(settings: Settings, topic: str, tenants: dict[str, float]) -> Iterator[RoutingProducer]:
    """A producer sending ``tenants`` (name -> records/s) to ``topic`` until the block ends."""
    stop = threading.Event()
    with RoutingProducer(producer_conf(settings)) as producer:
        producer.wait_ready(30)

        def send() -> None:
            sent = dict.fromkeys(tenants, 0.0)
            started = time.monotonic()
            while not stop.wait(0.05):
                elapsed = time.monotonic() - started
                for tenant, rate in tenants.items():
                    while sent[tenant] < rate * elapsed:
                        producer.produce(topic, value=b"x" * 64, key=tenant.encode())
                        sent[tenant] += 1

        thread = threading.Thread(target=send, name="live-page-traffic", daemon=True)
        thread.start()
        try:
            yield producer
        finally:
            stop.set()
            thread.join(10)


def test_live_page_shows_a_real_decision_finds_its_route_and_metrics_count_it(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str], tmp_path: Path
) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(
            f"the live page test drives Chromium with playwright (pyproject's dev extra): {exc}",
            pytrace=False,
        )
    browser_path = chromium()
    base = f"http://127.0.0.1:{worker.web_port}"
    topic = data_topic(12)
    tenant = f"team/live-{uuid.uuid4().hex[:8]}"  # a "/" in a tenant must not break the search
    reason = f"live page check {uuid.uuid4().hex[:8]}"

    # A real decision through the single writer: the CLI waits for its event. Relaxed: the route
    # is active at once (a strict move waits for the producers that other tests left behind).
    done = cli(
        routing_settings,
        "routes",
        "pin",
        topic,
        tenant,
        "-p",
        str(PINNED_TO),
        "--mode",
        "relaxed",
        "--reason",
        reason,
    )
    assert done.returncode == 0, done.stderr

    load = {tenant: 100.0, **{f"{tenant}-small-{i}": 10.0 for i in range(11)}}
    with traffic(routing_settings, topic, load), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{base}/ui/?topic={topic}")
            page.wait_for_selector("body[data-loaded='1']", timeout=15_000)

            # The decision, with its reason, in the list of recent decisions.
            row = page.locator("#decisions tr.decision", has_text=reason)
            row.first.wait_for(timeout=20_000)
            text = row.first.inner_text()
            assert tenant in text and "pin" in text and topic in text, text

            # Searching the tenant's route shows where the pin put it.
            page.fill("#search-topic", topic)
            page.fill("#search-tenant", tenant)
            page.click("#search-go")
            partitions = page.locator('#route dd[data-field="partitions"]')
            partitions.wait_for(timeout=10_000)
            assert partitions.inner_text() == f"[{PINNED_TO}]"
            assert page.locator('#route dd[data-field="status"]').inner_text() == "active"

            # Partition load: once two windows of this topic are planned (the first sample of a
            # topic only starts its rates), the heat map has its columns.
            def heat_columns() -> int:
                data = worker.get(f"/ui/data?topic={topic}")
                heat = data["heatmap"]
                if heat["topic"] != topic:
                    return 0
                return sum(1 for column in heat["rates"] if any(v for v in column))

            wait_for(heat_columns, timeout=90, what=f"a planned window with load on {topic}")
            page.wait_for_function(
                "() => document.getElementById('heat-empty').style.display === 'none'", timeout=10_000
            )
            # The top tenants are the last planned window's, over every topic this session's
            # worker serves: on a busy machine other tests' tenants may fill a window first.
            wait_for(
                lambda: any(t["tenant"] == tenant for t in worker.get("/ui/data")["top_tenants"]["tenants"]),
                timeout=60,
                what=f"{tenant} among the top tenants of a planned window",
            )
            page.locator("#top tr", has_text=tenant).first.wait_for(timeout=15_000)
            page.wait_for_timeout(2500)  # one more poll: the freshest window on the screenshot

            shot = tmp_path / "live-page.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nlive page screenshot: {shot}")
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()

    # /metrics: Faust's sensor and ours, the pin counted by action and reason kind.
    found = samples(get_text(f"{base}/metrics"))
    assert found[("routing_decisions_total", (("action", "pin"), ("reason_kind", "operator")))] >= 1
    assert found[("routing_writer_commands_applied_total", ())] >= 1
    assert found[("routing_worker_planner", ())] == 1
    assert found[("routing_planner_cycles_total", ())] >= 1
    assert found[("routing_usage_windows_closed_total", ())] >= 1
    assert (
        "routing_partition_load_records_per_second",
        (("partition", str(PINNED_TO)), ("topic", topic)),
    ) in found
    assert found[("faust_messages_received_total", ())] > 0
    assert any(name.startswith("process_") for name, _ in found)

    # /ui without its slash leads to the page, keeping the query.
    with urllib.request.urlopen(f"{base}/ui?topic={topic}", timeout=10) as response:
        assert response.geturl() == f"{base}/ui/?topic={topic}"
        assert "<title>routing_app" in response.read().decode()


def test_producer_metrics_served_over_http(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str]
) -> None:
    topic = data_topic(4)
    tenant = f"metrics-{uuid.uuid4().hex[:8]}"
    done = cli(routing_settings, "routes", "pin", topic, tenant, "-p", "1", "--mode", "relaxed")
    assert done.returncode == 0, done.stderr
    conf = producer_conf(routing_settings)
    with RoutingProducer(conf) as producer:
        producer.wait_ready(30)
        wait_for(lambda: producer.route_for(topic, tenant) is not None, what="route in cache")
        for i in range(10):
            producer.send(topic, b"v", tenant.encode()).result(10)
            producer.send(topic, b"v", f"hashed-{i}".encode()).result(10)
        port = free_port()
        server, thread = serve_producer_metrics(producer, conf, port=port, registry=CollectorRegistry())
        try:
            me = (("producer", producer.producer_id),)
            lag = ("routing_producer_route_cache_lag_records", me)

            def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
                try:
                    found = samples(get_text(f"http://127.0.0.1:{port}/metrics"))
                except urllib.error.URLError:
                    return None  # the server thread is still starting
                # The cache tails the routes topic: caught up, it is 0 behind its end.
                return found if found.get(lag) == 0 else None

            found = wait_for(scrape, timeout=20, what="the producer's metrics with its cache caught up")
            assert found[("routing_producer_records_total", (("path", "routed"), *me))] >= 10
            assert found[("routing_producer_records_total", (("path", "hashed"), *me))] >= 10
            assert found[("routing_producer_route_cache_routes", me)] >= 1
            assert found[("routing_producer_route_cache_undecodable_total", me)] == 0
            end = found[("routing_producer_routes_end_offset", me)]
            assert end >= 1
        finally:
            server.shutdown()
            thread.join(5)
