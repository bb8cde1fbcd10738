"""The English sentences that explain the planner's changes (a route's ``reason``, an event's).

Only words live here: each step decides first (its ``ReasonKind``), then asks for the
sentence, so rewording one changes what a person reads and nothing a program groups by.
Rates are records per second; ``state`` is a partition's ``partition_state`` sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def rate(value: float) -> str:
    return f"{value:,.0f}/s"


def partition_list(parts: Iterable[int]) -> str:
    items = list(parts)
    return f"partition {items[0]}" if len(items) == 1 else f"partitions {items}"


def partition_state(p: int, load: float, mean: float, measured: bool) -> str:
    """How loaded p is, in the view (estimate or measured) where it is the most loaded."""
    times = load / mean if mean > 0 else 0.0
    return (
        f"partition {p} at {rate(load)}{' measured' if measured else ''} is "
        f"{times:.2f}x the mean {rate(mean)}"
    )


# -- evacuate --------------------------------------------------------------------------------------


def evacuate(
    tenant: str,
    tenant_rate: float,
    bad: Sequence[int],
    n: int,
    route_partitions: Sequence[int],
    moved_to: Sequence[int],
) -> str:
    """``bad``: the partitions it leaves, missing (outside 0..n-1) or evacuated; none when its
    route names a partition twice."""
    if bad:
        why = ", ".join(
            f"partition {p} does not exist (0..{n - 1})"
            if not 0 <= p < n
            else f"partition {p} is being evacuated"
            for p in bad
        )
    else:
        why = f"route names a partition twice: {list(route_partitions)}"
    return f"{why}; {tenant} ({rate(tenant_rate)}) moves to {partition_list(moved_to)}"


# -- shard -----------------------------------------------------------------------------------------


def shard_grow(tenant: str, tenant_rate: float, mean: float, unit: float, count: int, was: int) -> str:
    return (
        f"{tenant} sends {rate(tenant_rate)}, {tenant_rate / mean:.1f}x the mean "
        f"partition load {rate(mean)}; a partition should carry at most "
        f"{rate(unit)} of it: sharded over {count} partitions (was {was})"
    )


def shard_shrink(
    tenant: str, tenant_rate: float, unit: float, hysteresis: float, count: int, was: int
) -> str:
    return (
        f"{tenant} now sends {rate(tenant_rate)}, less than {was - 1} "
        f"shards of {rate(unit)} (minus {hysteresis:.0%} "
        f"hysteresis): shrunk from {was} to {count} partitions"
    )


def shard_split(state: str, tenant: str, tenant_rate: float, count: int, was: int) -> str:
    return (
        f"{state} and no tenant there fits elsewhere whole: "
        f"{tenant} ({rate(tenant_rate)}) sharded over {count} partitions (was "
        f"{was}) so its shares ({rate(tenant_rate / count)}) fit the room left"
    )


# -- isolate ---------------------------------------------------------------------------------------


def hot_partition(
    state: str, tenant: str, tenant_rate: float, target: int, target_load: float, target_lag: float
) -> str:
    lag = f", lag {int(target_lag):,}" if target_lag else ""
    return (
        f"{state}; {tenant} sends {rate(tenant_rate)}: isolated on partition "
        f"{target} ({rate(target_load)}{lag})"
    )


def unsplittable(
    tenant: str,
    tenant_rate: float,
    unit: float,
    top_stream: float,
    streams: tuple[float, int] | None,
    target: int,
    target_load: float,
) -> str:
    """``streams``: (heaviest stream's rate, streams) when the tenant is known to send several."""
    what = (
        f"its heaviest of {streams[1]:,} ordered streams"
        if streams and streams[1]
        else "its heaviest ordered stream"
        if streams
        else "it is one ordered stream (records without a secondary key)"
    )
    return (
        f"{tenant} sends {rate(tenant_rate)}, more than a shard's {rate(unit)}, but "
        f"{what} carries {rate(top_stream)}: not sharded (strict order keeps each stream "
        f"on one partition); isolated on partition {target} "
        f"({rate(target_load)}) instead"
    )


# -- rebalance -------------------------------------------------------------------------------------


def over_mean(state: str, tolerance: float) -> str:
    """Why a rebalance move starts: ``moving`` completes the sentence."""
    return f"{state} (tolerance {tolerance:.0%}); "


def making_room(tenant: str, amount: float, hot_state: str) -> str:
    """Why a smaller tenant moves aside: ``moving`` completes the sentence."""
    return f"making room for {tenant} ({rate(amount)}) from hot {hot_state}: "


def moving(why: str, tenant: str, amount: float, shards: int, target: int, target_load: float) -> str:
    what = f"{tenant} ({rate(amount)}{' per shard' if shards > 1 else ''})"
    return f"{why}moving {what} to partition {target} ({rate(target_load)})"


# -- merge -----------------------------------------------------------------------------------------


def cooled(
    tenant: str,
    tenant_rate: float,
    threshold: float,
    mean: float,
    cool_for_s: float,
    home: int,
    home_load: float,
) -> str:
    return (
        f"{tenant} sends {rate(tenant_rate)}, below {threshold:.0%}"
        f" of the mean {rate(mean)} for {cool_for_s:,.0f} s: back to hashing "
        f"(partition {home}, {rate(home_load)})"
    )


def cooled_kept_one_shard(
    tenant: str, tenant_rate: float, cool_for_s: float, home: int, home_load: float, keep: int, was: int
) -> str:
    return (
        f"{tenant} sends {rate(tenant_rate)}, cool for {cool_for_s:,.0f} s, but its hash "
        f"partition {home} ({rate(home_load)}) has no room: kept on "
        f"partition {keep} only (was {was} shards)"
    )


# -- expansion (routing-app topics expand / rebase) -------------------------------------------------


def filling(state: str, base: int, n: int) -> str:
    """Why a rebalance move goes to a partition expansion added: ``moving`` completes it."""
    return (
        f"{state} after expansion: filling partitions {base}..{n - 1} (unrouted tenants still "
        f"hash by {base}); "
    )


def rebase_home(tenant: str, tenant_rate: float, base: int, n: int, base_home: int, home: int) -> str:
    return (
        f"rebase: {tenant} ({rate(tenant_rate)}) hashes to partition {base_home} by the base "
        f"{base} and to {home} by the partition count {n}: moved there before the base is dropped"
    )


def base_dropped(base: int, n: int) -> str:
    return (
        f"rebase done: every tenant seen sending is where murmur2 % {n} puts it; unrouted keys "
        f"hash by {n} from now on instead of the base {base}"
    )
