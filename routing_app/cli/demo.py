"""``routing-app demo`` (the whole loop) and ``routing-app demo traffic`` (the generator only)."""

from __future__ import annotations

import sys
import time

import click
from rich.console import Console

from routing_app.cli.context import pass_settings
from routing_app.client import RoutingProducer
from routing_app.config import Settings
from routing_app.demo.run import DATA_PARTITIONS, DEMO_POLICY, DEMO_WINDOW_S, run_demo
from routing_app.demo.traffic import TrafficGenerator, TrafficPlan
from routing_app.topics import create_topic

_duration = click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds of traffic.",
)
_rate = click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=2000.0,
    show_default=True,
    help="Records per second, all tenants together.",
)


@click.group(invoke_without_command=True)
@_duration
@_rate
@click.option(
    "--offline",
    is_flag=True,
    help="No Kafka: replay the same traffic through the planner (same policy and "
    "windows, the live loop's timing) and print the decisions it would make.",
)
@click.pass_context
def demo(ctx: click.Context, duration: float, rate: float, offline: bool) -> None:
    """Local stack + two workers + traffic where one tenant turns hot, shown live."""
    if ctx.invoked_subcommand is not None:
        return
    settings = ctx.find_object(Settings)
    assert settings is not None
    plan = TrafficPlan(
        records_per_s=rate, hot_start_s=min(15.0, duration / 4), hot_end_s=min(60.0, duration * 0.6)
    )
    if offline:
        sys.exit(replay(settings, duration, plan, Console()))
    sys.exit(run_demo(settings, duration, plan, Console()))


def replay(settings: Settings, duration: float, plan: TrafficPlan, console: Console) -> int:
    from routing_app.app.policy_text import policy_from_text
    from routing_app.simulate.replay import replay_demo

    policy_text = settings.planner_policy or DEMO_POLICY
    window_s = settings.window_s if settings.planner_policy else DEMO_WINDOW_S
    result = replay_demo(
        plan, policy_from_text(policy_text), duration, window_s=window_s, partitions=DATA_PARTITIONS
    )
    console.print(
        f"offline replay: {duration:g} s of {plan.records_per_s:,.0f} records/s, "
        f"{plan.hot_tenant} x{plan.hot_factor:g} from {plan.hot_start_s:g} s to "
        f"{plan.hot_end_s:g} s, {window_s:g} s windows, policy {policy_text}"
    )
    for t, change in result.decisions:
        target = list(change.partitions) if change.partitions is not None else "hash"
        console.print(
            f"  t={t:5.1f}s {change.action.value:<9} {change.tenant} → {target}: {change.reason}",
            highlight=False,
        )
    counts = result.counts()
    console.print(
        "decisions by action: "
        + (", ".join(f"{action} {count}" for action, count in sorted(counts.items())) or "none")
    )
    return 0


@demo.command()
@_duration
@_rate
@click.option("--topic", default="demo.orders", show_default=True)
@pass_settings
def traffic(settings: Settings, duration: float, rate: float, topic: str) -> None:
    """Only the traffic generator, against the configured cluster (used by docker-compose)."""
    create_topic(settings.kafka, topic, DATA_PARTITIONS)
    conf = settings.producer_config(**{"linger.ms": 5})
    with RoutingProducer(conf) as producer:
        producer.wait_ready(60)
        generator = TrafficGenerator(producer, TrafficPlan(topic=topic, records_per_s=rate))
        generator.start()
        try:
            while generator.elapsed() < duration:
                time.sleep(5)
                click.echo(
                    f"t={generator.elapsed():.0f}s sent={generator.sent} hot={generator.hot()}", err=True
                )
        finally:
            generator.stop()
            generator.join(5)
