"""Small helpers shared by the collectors: metric names from counter keys, families from dicts."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]+")


def metric_name(*parts: str) -> str:
    """``metric_name("routing_producer", "delivery failed")`` -> ``routing_producer_delivery_failed``."""
    return "_".join(p for p in (_NOT_NAME.sub("_", part).strip("_") for part in parts) if p)


def counter(
    name: str, documentation: str, value: float, labels: Mapping[str, str] | None = None
) -> CounterMetricFamily:
    """One counter sample. ``name`` without ``_total``: the exposition adds it."""
    family = CounterMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def gauge(
    name: str, documentation: str, value: float, labels: Mapping[str, str] | None = None
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def counters_as_families(
    prefix: str, counters: Mapping[str, float], what: str, skip: Sequence[str] = ()
) -> Iterator[Metric]:
    """Every key of ``counters`` (but ``skip``) as its own counter ``<prefix>_<key>_total``.

    Generic on purpose: a key added to the dict later shows up without a change here.
    """
    for key in sorted(counters):
        if key in skip:
            continue
        yield counter(metric_name(prefix, key), f"{what}: {key.replace('_', ' ')}", float(counters[key]))


class Families:
    """Families keyed by name, so several sources (producers, topics) share one family each;
    the text format allows a family's HELP and TYPE only once."""

    def __init__(self) -> None:
        self._families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

    def add(self, kind: str, name: str, documentation: str, labels: Mapping[str, str], value: float) -> None:
        family = self._families.get(name)
        if family is None:
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = self._families[name] = cls(name, documentation, labels=list(labels))
        family.add_metric(list(labels.values()), value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(list(self._families.values()))
