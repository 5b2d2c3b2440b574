"""`threefold stream ...`: replay files into Kafka topics, run the embedded services."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from threefold.core.command_line import clean_errors, emit_json

if TYPE_CHECKING:
    from threefold.streaming.connections import KafkaSettings


@click.group()
def stream() -> None:
    """Kafka helpers: replay files into topics, run embedded Redis and Kafka for demos."""


def kafka_settings_or_fail(bootstrap: str | None) -> KafkaSettings:
    """KAFKA_* settings, `--bootstrap` overriding KAFKA_BOOTSTRAP_SERVERS; UsageError if none."""
    from threefold.core.settings import load_settings
    from threefold.streaming.connections import KafkaSettings

    settings = load_settings(KafkaSettings, "KAFKA_", bootstrap_servers=bootstrap or None)
    if not settings.bootstrap_servers:
        raise click.UsageError(
            "no Kafka broker given: pass --bootstrap HOST:PORT or set KAFKA_BOOTSTRAP_SERVERS "
            "(an embedded broker started just for this command would vanish with it; "
            "`threefold stream services` runs one you can replay into)"
        )
    return settings


@stream.command("replay")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--topic", required=True, help="Topic to write to.")
@click.option("--rate", type=float, default=None, help="Messages per second (default: no limit).")
@click.option(
    "--bootstrap",
    default=None,
    help="Kafka host:port [env KAFKA_BOOTSTRAP_SERVERS; security from KAFKA_SECURITY_PROTOCOL, "
    "KAFKA_SASL_*, KAFKA_SSL_*].",
)
@click.option("--key-field", default=None, help="Record field to use as the message key.")
@click.option(
    "--timestamp-field",
    default=None,
    help="Record field with the event time (epoch s/ms or ISO 8601) for the message timestamp.",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
@clean_errors
def replay_command(
    file: str,
    topic: str,
    rate: float | None,
    bootstrap: str | None,
    key_field: str | None,
    timestamp_field: str | None,
    progress: bool,
) -> None:
    """Send each record of FILE (CSV, JSON or JSONL) to a topic as a JSON message.

    Prints one JSON summary on stdout: {"sent", "refused", "refused_records", "topic",
    "seconds"}: a record Kafka refuses (too large) is skipped and named by its line. When Kafka
    stops answering, the error says which lines were acknowledged and where to resume.
    """
    from threefold.streaming.replay import replay_file

    summary = replay_file(
        file,
        topic=topic,
        kafka=kafka_settings_or_fail(bootstrap),
        rate=rate,
        key_field=key_field,
        timestamp_field=timestamp_field,
        progress=progress,
    )
    emit_json(summary)


@stream.command("services")
@click.option("--redis/--no-redis", "want_redis", default=True, help="Start redis-server.")
@click.option("--kafka/--no-kafka", "want_kafka", default=True, help="Start the tansu broker.")
@clean_errors
def services_command(want_redis: bool, want_kafka: bool) -> None:
    """Run embedded Redis and Kafka until Ctrl-C; prints `export` lines for other shells."""
    import signal
    import threading

    from threefold.streaming.services import start_kafka, start_redis

    started = []
    try:
        if want_redis:
            redis = start_redis()
            started.append(redis)
            click.echo(f"export REDIS_URL={redis.url}")
        if want_kafka:
            kafka = start_kafka()
            started.append(kafka)
            click.echo(f"export KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}")
        click.echo("# running; Ctrl-C (or SIGTERM) stops them", err=True)
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        for service in reversed(started):
            service.stop()
