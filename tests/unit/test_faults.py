"""Faults without a broker (issue 12): connection logs summarised, drains that time out say what
they waited for, and every CLI command turns a bad setting into one line and exit code 2."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError

from routing_app.cli import main
from routing_app.config import ConfigError, load_settings
from routing_app.connection import AiokafkaNoiseFilter, BrokerHealth, ClientLog
from routing_app.control.drain import (
    Drain,
    DrainAck,
    OnTimeout,
    Phase,
    describe_wait,
    finish,
    progress,
)
from routing_app.routes.model import Route, RouteStatus

BIN = Path(sys.executable).parent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _refused(address: str) -> tuple[int, str, str, str, str]:
    return (
        logging.ERROR,
        "%s [%s] %s",
        "FAIL",
        "rdkafka#producer-1",
        f"[thrd:{address}/bootstrap]: {address}/bootstrap: Connect to ipv4#{address} "
        "failed: Connection refused (after 0ms in state CONNECT)",
    )


def _stats(address: str, state: str) -> str:
    return json.dumps({"brokers": {f"{address}/1": {"nodename": address, "state": state}}})


# -- 7. librdkafka's connection errors -----------------------------------------------------------
def test_an_outage_is_one_line_per_broker_and_its_end_one_more(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    health = BrokerHealth(logging.getLogger("test.librdkafka"), clock)
    producer, cache = ClientLog(health), ClientLog(health)
    with caplog.at_level(logging.INFO, logger="test.librdkafka"):
        for _ in range(150):  # two clients of one process, retrying for 12 s
            producer.log(*_refused("10.0.0.1:9092"))
            cache.log(*_refused("10.0.0.1:9092"))
            producer.error_cb(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
            clock.now += 0.08
        cache.stats_cb(_stats("10.0.0.1:9092", "CONNECT"))
        cache.stats_cb(_stats("10.0.0.1:9092", "UP"))
        clock.now += 1.0
        producer.log(*_refused("10.0.0.1:9092"))  # a client that had not reconnected yet
        clock.now += 1.0
        cache.stats_cb(_stats("10.0.0.1:9092", "UP"))
        clock.now += 2.0
        producer.stats_cb(_stats("10.0.0.1:9092", "UP"))
        assert len(caplog.records) == 1, "back only once up for a while"
        clock.now += 2.0
        producer.stats_cb(_stats("10.0.0.1:9092", "UP"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("cannot reach Kafka broker 10.0.0.1:9092: Connect to")
    assert lines[1] == (
        "reconnected to Kafka broker 10.0.0.1:9092 after 14.0 s (301 connection errors not logged)"
    )
    assert not health.any_down


def test_a_long_outage_is_recalled_once_a_minute_and_other_lines_are_not_repeated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    health = BrokerHealth(logging.getLogger("test.librdkafka"), clock)
    client = ClientLog(health)
    with caplog.at_level(logging.INFO, logger="test.librdkafka"):
        for _ in range(130):
            client.log(*_refused("10.0.0.1:9092"))
            client.log(
                logging.WARNING,
                "%s [%s] %s",
                "CONFWARN",
                "rdkafka#consumer-2",
                "[thrd:app]: Configuration property x is ignored",
            )
            clock.now += 1.0
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("cannot reach") for line in lines) == 1
    assert sum(line.startswith("still cannot reach Kafka broker 10.0.0.1:9092 after") for line in lines) == 2
    config = [line for line in lines if "CONFWARN" in line]
    assert len(config) == 3  # once, then once a minute with the count
    assert config[1].endswith("(and 59 identical lines in the last 60 s)")


def test_a_user_error_cb_and_stats_cb_are_still_called() -> None:
    from routing_app.connection import with_client_log

    errors: list[KafkaError] = []
    stats: list[str] = []
    conf = with_client_log({"bootstrap.servers": "x:1", "error_cb": errors.append, "stats_cb": stats.append})
    conf["error_cb"](KafkaError(KafkaError._MSG_TIMED_OUT, "timed out"))
    conf["stats_cb"]("{}")
    assert len(errors) == 1 and stats == ["{}"]
    assert conf["statistics.interval.ms"] > 0 and conf["logger"] is not None


def test_aiokafka_per_attempt_errors_pass_once_then_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    noise = AiokafkaNoiseFilter(clock)
    logger = logging.getLogger("test.aiokafka")
    logger.addFilter(noise)
    try:
        with caplog.at_level(logging.INFO, logger="test.aiokafka"):
            for _ in range(500):
                logger.error(
                    'Unable connect to "%s:%s": %s',
                    "10.0.0.1",
                    9092,
                    ConnectionRefusedError(111, "Connect call failed"),
                )
                logger.error("Unable to update metadata from %s", [1])
                clock.now += 0.01
            logger.error("Topic %s not found in cluster metadata", "orders")  # not connection
            noise.flush()  # still failing: nothing to say yet
            clock.now += AiokafkaNoiseFilter.QUIET_S
            noise.flush()
    finally:
        logger.removeFilter(noise)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5, lines
    assert lines[0].startswith('Unable connect to "10.0.0.1:9092"')
    assert "not found in cluster metadata" in lines[2]
    assert (
        "no more 'Unable connect to \"%s:%s\": %s' errors for 10.0.0.1 after 5.0 s "
        "(499 repeats not logged)" in lines[3]
    )
    assert "(499 repeats not logged)" in lines[4]


# -- 6. a drain that times out says what it waited for ------------------------------------------
def _drain() -> Drain:
    return Drain(
        topic="orders",
        tenant="acme",
        epoch=5,
        from_partitions=(3,),
        to_partitions=(5,),
        then_tombstone=False,
        started_ms=0,
        deadline_ms=10_000,
        expected=frozenset({"p1", "p2"}),
        action="pin",
    )


def _draining() -> Route:
    return Route("orders", "acme", (5,), 5, status=RouteStatus.DRAINING, previous_partitions=(3,))


def test_a_drain_timed_out_on_a_producer_names_the_producer_not_the_groups() -> None:
    drain = _drain().with_ack(DrainAck("p1", "orders", "acme", 5, {3: 41}, acked_at_ms=1))
    step = progress(drain, 10_000, {"p1", "p2"}, ack_grace_ms=500)
    assert step.phase is Phase.TIMED_OUT and step.stuck_in is Phase.PRODUCERS
    waited = describe_wait(drain, step, ["billing"])
    end = finish(
        drain, _draining(), step.phase, OnTimeout.ABORT, now_ms=10_000, worker_id="w", waiting_for=waited
    )
    assert end.event.action == "drain-abort"
    assert "waiting for producer p2 (no drain ack)" in end.event.reason
    assert "group" not in end.event.reason


def test_a_drain_timed_out_on_the_groups_names_them_and_the_offsets() -> None:
    drain = _drain()
    for pid, offset in (("p1", 41), ("p2", 99)):
        drain = drain.with_ack(DrainAck(pid, "orders", "acme", 5, {3: offset}, acked_at_ms=1))
    step = progress(drain, 10_000, {"p1", "p2"}, ack_grace_ms=500, committed={3: 60})
    assert step.phase is Phase.TIMED_OUT and step.stuck_in is Phase.CONSUMERS
    waited = describe_wait(drain, step, ["billing", "audit"])
    assert waited == ("consumer groups billing, audit to read orders partition 3 up to offset 100",)
    # Done at the deadline is done, not timed out.
    assert progress(drain, 10_000, {"p1", "p2"}, ack_grace_ms=500, committed={3: 100}).phase is Phase.DONE


def test_held_records_come_from_the_release_reports_not_the_acks() -> None:
    drain = _drain().with_ack(DrainAck("p1", "orders", "acme", 5, {3: 41}, acked_at_ms=1, held=2))
    end = finish(drain, _draining(), Phase.DONE, OnTimeout.ABORT, now_ms=900, worker_id="w")
    assert end.event.observed["held_at_ack"] == 2
    assert "held_records" not in end.event.observed  # added by the writer from the reports


# -- 11. bad settings and options -----------------------------------------------------------------
def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _leaf_commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = _leaf_commands(main)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_turns_a_bad_variable_into_one_line_and_exit_2(
    command: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, [*command, "--help"], env={"ROUTING_WEB_PORT": "sixty", "ROUTING_CONFIG": None}
    )
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(
        "error: environment variable ROUTING_WEB_PORT='sixty'"
    ), lines


def test_a_bad_config_file_names_the_file_and_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "routing-app.toml"
    config.write_text("[routing]\ndrain-timeout-ms = -3\n")
    result = CliRunner().invoke(main, ["routes", "list"], env={"ROUTING_CONFIG": None})
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: config file {Path('routing-app.toml')}, key 'drain-timeout-ms': setting "
        "'drain_timeout_ms' must be positive"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("routes", "pin", "t", "x", "-p", "1", "--wait", "-5"),
        ("routes", "pin", "t", "x", "-p", "-1"),
        ("routes", "unpin", "t", "x", "--wait", "1e9"),
        ("routes", "evacuate", "t", "-p", "-2"),
        ("routes", "drain", "t", "-p", "-2"),  # the deprecated alias checks the same
        ("routes", "list", "--timeout", "0"),
        ("routes", "show", "t", "x", "--timeout", "-1"),
    ],
)
def test_negative_or_absurd_numbers_are_refused(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, list(args), env={"ROUTING_CONFIG": None})
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output


@pytest.mark.parametrize(
    "argv",
    [
        ["routing-app", "simulate", "--help"],
        ["routing-app", "routes", "list"],
        ["routing-app", "stack", "status"],
    ],
)
def test_a_bad_variable_never_gives_a_traceback(argv: list[str], tmp_path: Path) -> None:
    # A fresh process: importing the CLI must not build the worker's app (which read the
    # settings at import, before any command could catch the error).
    env = {"PATH": str(BIN), "ROUTING_WEB_PORT": "sixty", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: environment variable ROUTING_WEB_PORT='sixty': setting 'web_port': cannot use "
        "'sixty' (int expected): invalid literal for int() with base 10: 'sixty'"
    ]


def test_the_worker_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": str(BIN), "ROUTING_WEB_BIND": " ", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(BIN / "faust"), "-A", "routing_app.app", "worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("routing-app worker: environment variable ROUTING_WEB_BIND=' ': setting 'web_bind'")
    )


# -- 2. the web server's address ------------------------------------------------------------------
def test_the_web_server_binds_loopback_unless_told_otherwise() -> None:
    from routing_app.app.main import create_app

    assert load_settings(environ={}).web_bind == "127.0.0.1"
    default = create_app(load_settings(environ={}, app_id="bind-default"))
    assert default.conf.web_bind == "127.0.0.1"
    opened = create_app(load_settings(environ={"ROUTING_WEB_BIND": "0.0.0.0"}, app_id="bind-open"))
    assert opened.conf.web_bind == "0.0.0.0"
    with pytest.raises(ConfigError, match="ROUTING_WEB_BIND"):
        load_settings(environ={"ROUTING_WEB_BIND": "127.0.0.1 0.0.0.0"})
