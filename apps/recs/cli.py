"""`threefold recs build|eval` and `threefold serve recs` (heavy imports inside commands)."""

from __future__ import annotations

from pathlib import Path

import click

from threefold.apps.recs.config import DEFAULT_EVENTS, DEFAULT_ITEMS
from threefold.core.base_model import BASE_MODEL_ENV
from threefold.core.command_line import clean_errors, emit_json


def _training_options(function):
    options = [
        click.option(
            "--base-model",
            default=None,
            envvar=BASE_MODEL_ENV,
            help="Base encoder (default: packaged MiniLM).",
        ),
        click.option(
            "--max-steps", default=40, show_default=True, help="Fine-tuning steps (capped)."
        ),
        click.option("--max-pairs", default=4000, show_default=True, help="Training pairs."),
        click.option("--batch-size", default=16, show_default=True),
        click.option(
            "--fine-tune/--no-fine-tune",
            default=True,
            show_default=True,
            help="Fine-tune the text ranker (off: base encoder + tuned combiner).",
        ),
        click.option(
            "--sequence/--no-sequence",
            default=True,
            show_default=True,
            help="Train the sequence ranker (next-item self-attention) as a combiner feature.",
        ),
        click.option(
            "--sequence-seconds",
            default=480.0,
            show_default=True,
            type=click.FloatRange(min=1.0),
            help="Time budget of the sequence ranker's training.",
        ),
        click.option("--seed", default=13, show_default=True),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _settings(
    k: int,
    max_steps: int,
    max_pairs: int,
    batch_size: int,
    fine_tune: bool,
    seed: int,
    sequence: bool = True,
    sequence_seconds: float = 480.0,
):
    from threefold.apps.recs.ranker_training import RankerSettings
    from threefold.core.errors import ConfigError

    try:
        return RankerSettings(
            k=k,
            max_steps=max_steps,
            max_pairs=max_pairs,
            batch_size=batch_size,
            fine_tune=fine_tune,
            seed=seed,
            sequence=sequence,
            sequence_seconds=sequence_seconds,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _load(items: str, events: str):
    from threefold.apps.recs.catalog import load_catalog
    from threefold.apps.recs.events import load_events

    catalog = load_catalog(items)
    return catalog, load_events(events, known_items=catalog)


@click.group()
def recs() -> None:
    """Text-based recommendations: build a ranker, evaluate it against baselines."""


@recs.command("eval")
@click.option("--items", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--interactions",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="user_id,item_id,timestamp[,rating] (or the event log format).",
)
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000))
@_training_options
@clean_errors
def eval_command(
    items: str,
    interactions: str,
    k: int,
    base_model: str | None,
    max_steps: int,
    max_pairs: int,
    batch_size: int,
    fine_tune: bool,
    sequence: bool,
    sequence_seconds: float,
    seed: int,
) -> None:
    """Leave-last-out: model vs popularity, item-kNN and text similarity; prints one JSON object."""
    from threefold.apps.recs.evaluation import evaluate

    catalog, events = _load(items, interactions)
    settings = _settings(
        k, max_steps, max_pairs, batch_size, fine_tune, seed, sequence, sequence_seconds
    )
    result = evaluate(catalog, events, k=k, settings=settings, base_model=base_model)
    emit_json(result)


@recs.command("build")
@click.option("--items", default=str(DEFAULT_ITEMS), show_default=True, type=click.Path())
@click.option("--events", default=str(DEFAULT_EVENTS), show_default=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model folder.")
@_training_options
@clean_errors
def build_command(
    items: str,
    events: str,
    out: str,
    base_model: str | None,
    max_steps: int,
    max_pairs: int,
    batch_size: int,
    fine_tune: bool,
    sequence: bool,
    sequence_seconds: float,
    seed: int,
) -> None:
    """Train the ranker on an event log; serve it with THREEFOLD_RECS_MODEL_DIR=OUT."""
    from threefold.apps.recs.ranker_training import train_ranker

    catalog, log = _load(items, events)
    settings = _settings(
        10, max_steps, max_pairs, batch_size, fine_tune, seed, sequence, sequence_seconds
    )
    model = train_ranker(list(catalog), log, settings=settings, base_model=base_model)
    model.save(out)
    emit_json(
        {
            "out": str(Path(out).resolve()),
            "validation": model.info.get("validation", {}),
            "train_seconds": model.info.get("train_seconds"),
        }
    )


@click.command("recs")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8002, show_default=True, type=int)
@clean_errors
def serve_command(host: str, port: int) -> None:
    """Serve the recommendation API and the /store demo page (settings: THREEFOLD_RECS_*).

    Starts an embedded redis-server when REDIS_URL is unset, then embeds the catalog and tunes
    the combiner into Redis before the app opens.
    """
    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.resources import open_resources, prepare_recs
    from threefold.apps.recs.web import create_app
    from threefold.core.base_model import configure_offline
    from threefold.core.settings import load_settings
    from threefold.core.web import configure_json_logging
    from threefold.streaming.connections import RedisSettings
    from threefold.streaming.services import services

    configure_json_logging()
    configure_offline()
    settings = RecsConfig.from_env()
    redis = load_settings(RedisSettings, "REDIS_")
    with services(redis.url, None, need_kafka=False) as (redis_url, _):
        if redis.url is None:  # the embedded redis-server: no password, no TLS
            redis = RedisSettings(url=redis_url)
        tuned = prepare_recs(settings, redis)
        app = create_app(settings, open_resources(settings, redis, tuned=tuned))
        click.echo(f"recommendations on http://{host}:{port}/store", err=True)
        from threefold.core.server_errors import JsonErrorRequestHandler

        app.run(host=host, port=port, threaded=True, request_handler=JsonErrorRequestHandler)
