"""The ``routing-app`` command line: one group per concept, one module each in this package.

The domain packages hold no CLI code; these modules are the top layer and import down."""

from __future__ import annotations

from pathlib import Path

import click

from routing_app.config import ConfigError, Settings, load_settings


class _Cli(click.Group):
    """Turns the errors users can act on into one clear line and exit code 2, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from confluent_kafka import KafkaException

        from routing_app.client import RoutingProducerError
        from routing_app.codec import RegistryUnavailable
        from routing_app.connection import KafkaUnreachable
        from routing_app.control.client import CommandRefused

        try:
            return super().invoke(ctx)
        except (
            KafkaUnreachable,
            RegistryUnavailable,
            RoutingProducerError,
            ConfigError,
            KafkaException,
            TimeoutError,
            CommandRefused,
        ) as exc:
            message = str(exc) or type(exc).__name__
            if isinstance(exc, KafkaException) and isinstance(ctx.obj, Settings):
                # librdkafka's errors do not say where: the address is what to check first.
                message = f"Kafka at {ctx.obj.bootstrap}: {message}"
            click.echo(f"error: {message}", err=True)
            ctx.exit(2)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML config file (default: $ROUTING_CONFIG or ./routing-app.toml).",
)
@click.option("--bootstrap-servers", default=None, help="Existing Kafka cluster (skips the local stack).")
@click.option("--schema-registry-url", default=None, help="Existing Confluent-compatible registry.")
@click.pass_context
def main(
    ctx: click.Context,
    config_file: Path | None,
    bootstrap_servers: str | None,
    schema_registry_url: str | None,
) -> None:
    """Tenant-aware smart partitioning for Apache Kafka."""
    try:
        ctx.obj = load_settings(
            config_file, bootstrap_servers=bootstrap_servers, schema_registry_url=schema_registry_url
        )
    except ConfigError as exc:
        # One line that names the variable or key to fix; click's usage text would bury it.
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)


def _register() -> None:
    # Imported on first use of the group's module, after `main` exists.
    from routing_app.cli.audit import audit
    from routing_app.cli.bench import bench
    from routing_app.cli.demo import demo
    from routing_app.cli.routes import routes
    from routing_app.cli.simulate import simulate
    from routing_app.cli.stack import stack
    from routing_app.cli.topics import topics

    for group in (stack, topics, routes, demo, bench, simulate, audit):
        main.add_command(group)


_register()
