"""Kafka connections: errors a person can act on, and librdkafka's logs in ``logging``.

Every librdkafka client we create gets a ``logger``, an ``error_cb`` and (when it is polled) a
``stats_cb``, from :func:`client_settings` or :func:`polled_client_settings`. Without them
librdkafka writes each failed connection attempt to stderr, hundreds of lines per outage, and
nothing says when it is over. With them:

- the first failure to reach a broker is logged once per broker address, however many clients of
  the process see it; further failures are only counted (a reminder once a minute);
- the recovery is logged, with how long it took and how many attempts failed: "reconnected to
  Kafka broker 127.0.0.1:19092 after 12.3 s (41 connection errors not logged)". Clients that are
  polled learn it from librdkafka's statistics (a broker in state UP); a broker nobody polls for
  is forgotten once it has been quiet for a while, so its next failure is news again;
- any other librdkafka line is logged as is, and an identical line repeated within a minute is
  counted instead.

The worker's aiokafka clients get the same treatment through :class:`AiokafkaNoiseFilter`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

from routing_app.config import KafkaAccess

librdkafka_log = logging.getLogger("routing_app.librdkafka")

# How often polled clients report broker states: how soon a recovery is noticed.
STATS_INTERVAL_MS = 2000
# A reminder while a broker stays unreachable.
REMINDER_S = 60.0
# A broker without failures this long, and never seen back (no polled client), is forgotten.
FORGET_S = 60.0
# Back means up for this long without a failure: right after a restart some clients still
# fail once or twice, and "reconnected" followed by "cannot reach" again says nothing.
STABLE_S = 3.0
# An identical non-connection line within this long is counted, not logged.
REPEAT_S = 60.0

# "127.0.0.1:19092/bootstrap: Connect to ipv4#127.0.0.1:19092 failed: ...", "sasl_ssl://h:9093/1:
# ...", and the group coordinator's "GroupCoordinator: 127.0.0.1:19092: ...".
_BROKER_LINE = re.compile(
    r"^(?:GroupCoordinator(?:/\d+)?: )?(?:[A-Za-z_]+://)?(?P<address>\[?[^\s/\]]+\]?:\d+)"
    r"(?:/\S*?)?: (?P<what>.*)$",
    re.DOTALL,
)
# librdkafka starts its log lines with the thread: "[thrd:127.0.0.1:19092/bootstrap]: ".
_THREAD = re.compile(r"^\[thrd:[^\]]*\]: ")
_CONNECTION_CODES = frozenset(
    {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._AUTHENTICATION, KafkaError._RESOLVE}
)


# The group ids of our readers that assign() partitions (no membership, no commits): librdkafka
# still looks up their coordinator, which an authorizer allows per group id (see topics.acls).
CACHE_GROUP_PREFIX = "routing-app-cache-"  # every route cache
CLI_GROUP_PREFIX = "routing-app-cli-"  # the CLI waiting for the writer's events
AUDIT_GROUP_PREFIX = "routing-app-audit-"
METRICS_GROUP_PREFIX = "routing-app-metrics-"  # a producer's routes-topic watermark


def reader_group(prefix: str) -> str:
    """A group id of its own for one assign()-only reader."""
    return f"{prefix}{uuid.uuid4()}"


class KafkaUnreachable(ConnectionError):
    pass


@dataclass
class _Outage:
    since: float
    last_failure: float
    last_logged: float
    attempts: int = 0
    up_since: float | None = None  # a client saw it up, and no failure came since
    message: str = ""  # the newest failure's


@dataclass
class _Repeat:
    first: float
    count: int = 0


@dataclass
class BrokerHealth:
    """Connection trouble per broker address, for every client of the process."""

    log: logging.Logger = librdkafka_log
    clock: Callable[[], float] = time.monotonic
    _outages: dict[str, _Outage] = field(default_factory=dict)
    _repeats: dict[str, _Repeat] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def any_down(self) -> bool:
        return bool(self._outages)

    def down(self) -> list[str]:
        with self._lock:
            return sorted(self._outages)

    def last_failure(self, addresses: str) -> str | None:
        """The newest failure reaching any of ``addresses`` (a bootstrap list), while it lasts."""
        with self._lock:
            found = [
                (o.last_failure, f"{a}: {o.message}")
                for a, o in self._outages.items()
                if a in addresses.split(",")
            ]
        return max(found)[1] if found else None

    def failed(self, address: str, message: str, *, counted: bool = True) -> None:
        """A connection to ``address`` failed (``counted``: one attempt; error events repeat
        what the log already counted)."""
        now = self.clock()
        with self._lock:
            self._forget_quiet(now)
            outage = self._outages.get(address)
            if outage is None:
                self._outages[address] = _Outage(now, now, now, int(counted), message=message)
                self.log.warning(
                    "cannot reach Kafka broker %s: %s; retrying (further connection errors to "
                    "it are counted, not logged, until it is back)",
                    address,
                    message,
                )
                return
            outage.attempts += int(counted)
            outage.last_failure = now
            outage.message = message
            outage.up_since = None
            if now - outage.last_logged >= REMINDER_S:
                outage.last_logged = now
                self.log.warning(
                    "still cannot reach Kafka broker %s after %.0f s (%d connection errors): %s",
                    address,
                    now - outage.since,
                    outage.attempts,
                    message,
                )

    def up(self, address: str) -> None:
        """A client sees ``address`` up; once it stayed up for STABLE_S, the outage is over."""
        if address not in self._outages:  # the common case, without the lock
            return
        now = self.clock()
        with self._lock:
            outage = self._outages.get(address)
            if outage is None:
                return
            if outage.up_since is None:
                outage.up_since = now
                return
            if now - outage.up_since < STABLE_S:
                return
            del self._outages[address]
        # As loud as the failure was: whoever saw the outage sees its end.
        self.log.warning(
            "reconnected to Kafka broker %s after %.1f s (%d connection errors not logged)",
            address,
            outage.up_since - outage.since,
            outage.attempts,
        )

    def other(self, level: int, message: str) -> None:
        """Any other client line: logged, unless the same line was logged within REPEAT_S."""
        now = self.clock()
        with self._lock:
            repeat = self._repeats.get(message)
            if repeat is not None and now - repeat.first < REPEAT_S:
                repeat.count += 1
                return
            self._repeats[message] = _Repeat(now)
            for old in [m for m, r in self._repeats.items() if now - r.first >= REPEAT_S]:
                del self._repeats[old]
        if repeat is not None and repeat.count:
            message = f"{message} (and {repeat.count} identical lines in the last {REPEAT_S:.0f} s)"
        self.log.log(level, "%s", message)

    def _forget_quiet(self, now: float) -> None:
        for address in [a for a, o in self._outages.items() if now - o.last_failure > FORGET_S]:
            del self._outages[address]


# One per process: a producer and its route cache reach the same brokers.
broker_health = BrokerHealth()


class ClientLog:
    """A librdkafka client's ``logger``, ``error_cb`` and ``stats_cb``, all feeding BrokerHealth.

    confluent-kafka calls ``log(level, "%s [%s] %s", facility, client name, message)`` from the
    client's poll(), and the callbacks from there too.
    """

    def __init__(
        self,
        health: BrokerHealth = broker_health,
        error_cb: Callable[[KafkaError], None] | None = None,
        stats_cb: Callable[[str], None] | None = None,
    ) -> None:
        self._health = health
        self._user_error_cb = error_cb
        self._user_stats_cb = stats_cb

    # -- logger ---------------------------------------------------------------------------------
    def log(self, level: int, fmt: str, *args: Any) -> None:
        message = _THREAD.sub("", str(args[-1]) if args else fmt)
        facility = str(args[0]) if len(args) == 3 else ""
        found = _BROKER_LINE.match(message)
        if found is not None and level >= logging.WARNING:
            # A broker's own warnings and errors are about reaching it (refused, timed out,
            # disconnected, authentication failed).
            self._health.failed(found["address"], found["what"])
        elif "brokers are down" in message and self._health.any_down:
            return  # said already, per broker
        else:
            self._health.other(level, f"{facility}: {message}" if facility else message)

    # -- error_cb -------------------------------------------------------------------------------
    def error_cb(self, err: KafkaError) -> None:
        if err.code() in _CONNECTION_CODES:
            found = _BROKER_LINE.match(err.str())
            if found is not None:
                # The log line of the same failure counted it.
                self._health.failed(found["address"], found["what"], counted=False)
            # "1/1 brokers are down" and the like: the per-broker lines say which, and where.
        else:
            self._health.other(
                logging.ERROR if err.fatal() else logging.WARNING, f"kafka client: {err.str()} ({err.name()})"
            )
        if self._user_error_cb is not None:
            self._user_error_cb(err)

    # -- stats_cb -------------------------------------------------------------------------------
    def stats_cb(self, stats: str) -> None:
        if self._health.any_down:
            try:
                brokers = json.loads(stats).get("brokers") or {}
            except ValueError:
                brokers = {}
            for broker in brokers.values():
                if broker.get("state") == "UP" and broker.get("nodename"):
                    self._health.up(str(broker["nodename"]))
        if self._user_stats_cb is not None:
            self._user_stats_cb(stats)


# Where a client connects: a Settings' ``kafka`` (address and credentials), or a bare address
# for a cluster without authentication.
Kafka = KafkaAccess | str


def access(kafka: Kafka) -> KafkaAccess:
    return kafka if isinstance(kafka, KafkaAccess) else KafkaAccess(kafka)


def client_settings(kafka: Kafka, **extra: Any) -> dict[str, Any]:
    """Settings for a librdkafka client of ours: its credentials, and its logs and errors go to
    Python logging.

    For clients polled only while they wait for something (admin clients): they get no
    statistics, which would queue up unread. See :func:`polled_client_settings`.
    """
    return with_client_log(access(kafka).client_config(**extra), polled=False)


def polled_client_settings(kafka: Kafka, **extra: Any) -> dict[str, Any]:
    """client_settings for a client whose poll() or consume() runs regularly (producers,
    consumers): it also reports broker states, which is how a recovery is noticed."""
    return with_client_log(access(kafka).client_config(**extra), polled=True)


def with_client_log(conf: dict[str, Any], *, polled: bool = True) -> dict[str, Any]:
    """``conf`` with our logger and callbacks; a logger, error_cb or stats_cb given in it
    is kept (and the callbacks still called)."""
    out = dict(conf)
    client_log = ClientLog(
        error_cb=out.pop("error_cb", None), stats_cb=out.pop("stats_cb", None) if polled else None
    )
    out.setdefault("logger", client_log)
    out["error_cb"] = client_log.error_cb
    if polled:
        out.setdefault("statistics.interval.ms", STATS_INTERVAL_MS)
        out["stats_cb"] = client_log.stats_cb
    elif "stats_cb" in conf:
        out["stats_cb"] = conf["stats_cb"]
    return out


def admin_client(kafka: Kafka) -> AdminClient:
    return AdminClient(client_settings(kafka))


def cluster_metadata(admin: AdminClient, kafka: Kafka, timeout: float = 10.0) -> ClusterMetadata:
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # its logs and errors: what the failure was (refused, bad password)
        raise KafkaUnreachable(unreachable_message(kafka, timeout, exc)) from exc


def unreachable_message(kafka: Kafka, timeout: float, exc: BaseException) -> str:
    """What to say when Kafka at ``kafka`` did not answer: the address first."""
    detail = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
    # librdkafka's error says "transport failure"; its log said why (refused, bad password).
    last = broker_health.last_failure(access(kafka).bootstrap)
    if last:
        detail = f"{detail}; {last}"
    if _AUTH_WORDS.search(detail):
        return (
            f"Kafka at {kafka} refused our credentials ({detail}); check "
            "ROUTING_SECURITY_PROTOCOL, ROUTING_SASL_MECHANISM, ROUTING_SASL_USERNAME and "
            "ROUTING_SASL_PASSWORD"
        )
    if "closed by peer" in detail and not access(kafka).security:
        # It answered, then hung up on a client that did not log in.
        return (
            f"Kafka at {kafka} closed the connection at once ({detail}): if its listener "
            "needs a login (SASL) or TLS, set ROUTING_SECURITY_PROTOCOL and the credentials "
            "(ROUTING_SASL_MECHANISM, ROUTING_SASL_USERNAME, ROUTING_SASL_PASSWORD)"
        )
    return (
        f"cannot reach Kafka at {kafka} within {timeout:g}s ({detail}); start the local "
        f"stack with `routing-app stack up`, or set ROUTING_BOOTSTRAP_SERVERS"
    )


_AUTH_WORDS = re.compile(r"SASL|[Aa]uthenticat|credential|SSL handshake|security\.protocol")


class AiokafkaNoiseFilter(logging.Filter):
    """The worker's aiokafka logs one ERROR per failed attempt (2,328 lines in a 34 s outage):
    the first line of each kind per broker or node passes, repeats are counted, and once they
    stop for QUIET_S, ``flush`` says so with the count."""

    QUIET_S = 5.0
    # Logger names of aiokafka modules that log per attempt (a filter applies to one logger).
    LOGGERS = (
        "aiokafka",
        "aiokafka.conn",
        "aiokafka.cluster",
        "aiokafka.consumer.fetcher",
        "aiokafka.consumer.group_coordinator",
        "aiokafka.consumer.consumer",
        "aiokafka.producer.sender",
        "aiokafka.producer.producer",
    )
    _CONNECTION_WORDS = (
        "Unable connect",
        "Unable to update metadata",
        "Failed fetch",
        "Heartbeat",
        "Coordinator",
        "Connection",
        "connection",
        "NodeNotReady",
        "KafkaConnectionError",
        "RequestTimedOut",
        "not available",
        "OffsetCommit",
        "Unable to request metadata",
    )

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._lock = threading.Lock()
        # (logger, message template, first argument) -> [first, last, suppressed, logger]
        self._seen: dict[tuple[str, str, str], list[Any]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "routing_summary", False):
            return True
        template = str(record.msg)
        if not any(word in template for word in self._CONNECTION_WORDS):
            args = record.args if isinstance(record.args, tuple) else ()
            if not any(any(w in str(a) for w in self._CONNECTION_WORDS) for a in args):
                return True
        args = record.args if isinstance(record.args, tuple) else ()
        key = (record.name, template, str(args[0]) if args else "")
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None:
                self._seen[key] = [now, now, 0, record.name]
                record.msg = f"{template} (repeats of this error are counted until it stops)"
                return True
            seen[1] = now
            seen[2] += 1
        return False

    def flush(self) -> None:
        """Logs the end of each repeated error that has been quiet for QUIET_S."""
        now = self._clock()
        with self._lock:
            over = [(k, v) for k, v in self._seen.items() if now - v[1] >= self.QUIET_S]
            for key, _ in over:
                del self._seen[key]
        for (name, template, first_arg), (first, last, suppressed, _) in over:
            if not suppressed:
                continue
            logging.getLogger(name).warning(
                "no more %r errors%s after %.1f s (%d repeats not logged)",
                template,
                f" for {first_arg}" if first_arg else "",
                last - first,
                suppressed,
                extra={"routing_summary": True},
            )

    def install(self) -> AiokafkaNoiseFilter:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, AiokafkaNoiseFilter) for f in logger.filters):
                logger.addFilter(self)
        return self


aiokafka_noise = AiokafkaNoiseFilter()
