"""Shared fixtures. The stack logic lives in routing_app.stack.testing; this only wires it in."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Generator, Iterator

import pytest

from routing_app.config import Settings
from routing_app.stack.testing import session_stack


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for a running Kafka + schema registry.

    ROUTING_BOOTSTRAP_SERVERS set: that cluster (and ROUTING_SCHEMA_REGISTRY_URL). Otherwise a
    private local stack on free ports, in a temporary state folder, stopped after the session.
    """
    with session_stack(tmp_path_factory.mktemp("stack")) as settings:
        yield settings


# -- no Kafka client outlives its test ---------------------------------------------------------
# librdkafka names its threads; every live Producer, Consumer or AdminClient has exactly one
# "rdk:main". Counting them (Linux: /proc/self/task/*/comm, ~0.4 ms) sees every client, ours and
# the tests' own, whatever Python object still holds it. Our own threads (a RoutingProducer's
# poll thread, a RouteCache's reader) are Python threads with these names.
LIBRDKAFKA_CLIENT_THREAD = "rdk:main"
OUR_CLIENT_THREADS = re.compile(r"(-poll|-routes|^route-cache)$")
_TASKS = "/proc/self/task"
# How long a client seen alive at the end of a test may take to finish closing.
LEAK_SETTLE_S = 2.0


def kafka_client_threads() -> Counter[str]:
    """Live librdkafka clients (as ``rdk:main`` threads) and our client threads, by name.

    Empty where the OS does not name threads in /proc: the check is then off, not wrong.
    """
    found: Counter[str] = Counter()
    try:
        tasks = os.listdir(_TASKS)
    except OSError:
        tasks = []
    for task in tasks:
        try:
            with open(f"{_TASKS}/{task}/comm") as comm:
                name = comm.read().strip()
        except OSError:  # the thread ended while we looked
            continue
        if name == LIBRDKAFKA_CLIENT_THREAD:
            found[name] += 1
    for thread in threading.enumerate():
        if OUR_CLIENT_THREADS.search(thread.name) and thread.is_alive():
            found[thread.name] += 1
    return found


def leaked_since(before: Counter[str]) -> Counter[str]:
    """What is alive now and was not before (a count per thread name)."""
    return kafka_client_threads() - before


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def no_leaked_kafka_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test if a Kafka client it started (directly or through our code) is still
    alive after it and its function-scoped fixtures ended: a client left running keeps
    reconnecting, and once the stack is gone floods the end of the run with "Connection
    refused". Session and module fixtures are set up before this snapshot, so their clients
    are theirs, not the test's."""
    before = kafka_client_threads()
    yield
    if request.node.stash.get(_CALL_FAILED, False):
        return  # the failure's traceback holds the test's locals, and its clients with them
    leaked = leaked_since(before)
    settle_until = time.monotonic() + LEAK_SETTLE_S
    while leaked and time.monotonic() < settle_until:
        # A client that a background thread of the test is closing right now is not a leak.
        time.sleep(0.05)
        leaked = leaked_since(before)
    if leaked:
        pytest.fail(
            "Kafka clients outlived the test: "
            + ", ".join(f"{n} x {name!r}" for name, n in sorted(leaked.items()))
            + f" ({LIBRDKAFKA_CLIENT_THREAD!r} = one librdkafka Producer/Consumer/AdminClient). "
            "Close every RoutingProducer, Consumer and RouteCache the test makes (with-blocks), "
            "and drop AdminClients and Producers before it returns.",
            pytrace=False,
        )
