"""`threefold recs build|eval|ab-config|ab-report`, `threefold retrain|serve recs`.

Heavy imports happen inside the commands.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from threefold.apps.recs.config import DEFAULT_EVENTS, DEFAULT_GATE_EVENTS, DEFAULT_ITEMS
from threefold.core.base_model import BASE_MODEL_ENV
from threefold.core.command_line import clean_errors, emit_json

REGISTRY_ENV = "THREEFOLD_MODELS_DIR"
MODEL_DIR_ENV = "THREEFOLD_RECS_MODEL_DIR"

if TYPE_CHECKING:
    from threefold.apps.recs.catalog import Catalog
    from threefold.apps.recs.events import Event
    from threefold.apps.recs.redis_state import RedisState


TRAINING_OPTIONS = (
    "max_steps",
    "max_pairs",
    "batch_size",
    "fine_tune",
    "seed",
    "sequence",
    "sequence_seconds",
    "sequence_ensemble",
    "sequence_processes",
)
"""`RankerSettings` fields set by `_training_options`; a command receives them as `training`."""


def _training_options(function):
    """Add the ranker-training options; the command gets them as one `training` dict."""
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
            "--sequence-ensemble/--single-sequence",
            default=True,
            show_default=True,
            help="Sequence ranker = text-aware ranker + ID-only SASRec averaged (single: the "
            "text-aware one alone, about half the training time).",
        ),
        click.option(
            "--sequence-seconds",
            default=480.0,
            show_default=True,
            type=click.FloatRange(min=1.0),
            help="Time budget of the sequence ranker's training.",
        ),
        click.option(
            "--sequence-processes",
            default=None,
            type=click.IntRange(min=1),
            help="Ensemble members trained at once, each in its own process (default: one per "
            "CPU core; 1: one after the other).",
        ),
        click.option("--seed", default=13, show_default=True),
    ]

    @functools.wraps(function)
    def gathered(*args: Any, **kwargs: Any) -> Any:
        training = {name: kwargs.pop(name) for name in TRAINING_OPTIONS}
        return function(*args, training=training, **kwargs)

    for option in reversed(options):
        gathered = option(gathered)
    return gathered


def _settings(k: int, training: dict[str, Any]):
    from threefold.apps.recs.ranker_training import RankerSettings
    from threefold.core.errors import ConfigError

    try:
        return RankerSettings(k=k, **training)
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
    training: dict[str, Any],
) -> None:
    """Leave-last-out: model vs popularity, item-kNN and text similarity; prints one JSON object."""
    from threefold.apps.recs.evaluation import evaluate

    catalog, events = _load(items, interactions)
    settings = _settings(k, training)
    result = evaluate(catalog, events, k=k, settings=settings, base_model=base_model)
    emit_json(result)


@recs.command("build")
@click.option("--items", default=str(DEFAULT_ITEMS), show_default=True, type=click.Path())
@click.option("--events", default=str(DEFAULT_EVENTS), show_default=True, type=click.Path())
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Model folder; when it is a registry entry the model is published there.",
)
@click.option(
    "--registry",
    default=None,
    type=click.Path(file_okay=False),
    help="Registry ROOT: publish as the next current version of ROOT/recs-ranker.",
)
@click.option("--created-by", default=None, help="Recorded in the version (default: $USER).")
@click.option(
    "--overwrite", is_flag=True, help="Replace the recs model a plain --out folder holds."
)
@_training_options
@clean_errors
def build_command(
    items: str,
    events: str,
    out: str | None,
    registry: str | None,
    created_by: str | None,
    overwrite: bool,
    base_model: str | None,
    training: dict[str, Any],
) -> None:
    """Train the ranker on an event log; serve it with THREEFOLD_RECS_MODEL_DIR=OUT (or the entry).

    A plain OUT folder is written whole and swapped in at the end (an existing model there
    needs --overwrite). With --registry ROOT (or an --out that is a registry entry) the model
    becomes the entry's new current version, with its data fingerprint, creator and validation
    metrics recorded; a running API picks it up without a restart.
    """
    from threefold.apps.recs.ranker_store import MODEL_FILE, check_save_target
    from threefold.apps.recs.ranker_training import train_ranker
    from threefold.apps.recs.retrain import entry_for, publish_ranker, training_fingerprint
    from threefold.core.errors import ConfigError
    from threefold.core.registry import ModelEntry, check_entry_holds

    if (out is None) == (registry is None):
        raise click.UsageError("pass exactly one of --out DIR and --registry ROOT")
    entry = None
    if registry is not None or ModelEntry.is_entry(out):
        entry = entry_for(registry, out)
        check_entry_holds(entry.path, [MODEL_FILE], "a recs ranker")
    elif check_save_target(Path(out)) and not overwrite:
        raise ConfigError(
            f"--out {out} already holds a recs model; pass --overwrite to replace it (the new "
            "one is swapped in whole when the build has finished), or choose a new folder"
        )
    catalog, log = _load(items, events)
    settings = _settings(10, training)
    model = train_ranker(list(catalog), log, settings=settings, base_model=base_model)
    result = {
        "validation": model.info.get("validation", {}),
        "train_seconds": model.info.get("train_seconds"),
    }
    if entry is None:
        model.save(out)
        emit_json({"out": str(Path(out).resolve()), **result})
        return
    metadata = {
        "data_fingerprint": training_fingerprint(catalog, log),
        "metrics": {f"validation_{k}": v for k, v in result["validation"].items()},
        "training_events": {"base": len(log), "new": 0},
    }
    if created_by:
        metadata["created_by"] = created_by
    version = publish_ranker(entry, model, metadata=metadata)
    emit_json({"entry": str(entry.path.resolve()), "version": version, **result})


@recs.command("ab-config")
@click.option("--user", "users", multiple=True, help="Show this user's bucket and variant.")
@clean_errors
def ab_config_command(users: tuple[str, ...]) -> None:
    """The A/B test the API would run (THREEFOLD_RECS_AB_VARIANTS, _AB_SALT, _MODEL_DIR).

    Checks which pinned versions exist in the registry entry; prints one JSON object with the
    variants, their bucket ranges and the versions they serve (the control's for a variant whose
    version is missing: `fallbacks` says why), and --user assignments.
    """
    from threefold.apps.recs.ab_buckets import CONTROL, bucket_of, served_label
    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.resources import check_pinned_versions
    from threefold.core.registry import ModelEntry

    settings = RecsConfig.from_env()
    missing = check_pinned_versions(settings).missing
    experiment = settings.experiment
    current = None
    if settings.model_dir is not None and ModelEntry.is_entry(settings.model_dir):
        current = ModelEntry(settings.model_dir).current_version()
    result = experiment.to_dict()
    for row in result["variants"]:
        served_by_control = row["variant"] == CONTROL or row["variant"] in missing
        row["model_version"] = current if served_by_control else row["variant"]
    result["model_dir"] = str(settings.model_dir) if settings.model_dir else None
    result["fallbacks"] = missing
    result["users"] = [
        {
            "user_id": u,
            "bucket": bucket_of(experiment.salt, u),
            "variant": served_label(experiment.assign(u), missing),
        }
        for u in users
    ]
    emit_json(result)


@recs.command("ab-report")
@click.option(
    "--confidence",
    default=0.95,
    show_default=True,
    type=click.FloatRange(0.5, 0.999),
    help="Of the interval on each variant's CTR difference to the control.",
)
@clean_errors
def ab_report_command(confidence: float) -> None:
    """Per A/B variant: lists, items shown, clicks, purchases, CTR and a z-test vs the control.

    Reads the counts every worker wrote to Redis (REDIS_URL, THREEFOLD_RECS_REDIS_PREFIX);
    prints one JSON object, with a warning per pinned version missing from the registry entry
    (THREEFOLD_RECS_AB_VARIANTS, _MODEL_DIR): the control serves that variant's users. Without
    a readable registry entry the report still comes, with a warning that this was not checked.
    """
    from threefold.apps.recs.ab_report import ab_report
    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.redis_impressions import RedisImpressionStore
    from threefold.apps.recs.resources import check_pinned_versions
    from threefold.core.errors import ConfigError, ServiceError

    state = _redis_state()
    if state is None:
        raise ConfigError(
            "REDIS_URL is unset; the A/B counts live in the API's Redis. Fix: set REDIS_URL "
            "(and THREEFOLD_RECS_REDIS_PREFIX if the API uses another prefix)"
        )
    counts = RedisImpressionStore(state).ab_counts()
    if counts is None:
        raise ServiceError(
            f"Redis at {state.settings.display_url} does not answer: the A/B counts cannot be "
            "read. Fix: start Redis or point REDIS_URL at it"
        )
    try:
        missing, unchecked = check_pinned_versions(RecsConfig.from_env()).missing, None
    except ConfigError as exc:  # the counts do not need the registry; the check does
        missing, unchecked = {}, f"pinned versions not checked: {exc}"
    report = ab_report(counts, confidence, fallbacks=missing)
    if unchecked:
        report["warnings"].append(unchecked)
    emit_json(report)


@click.command("recs")
@click.option("--items", default=str(DEFAULT_ITEMS), show_default=True, type=click.Path())
@click.option(
    "--events",
    default=str(DEFAULT_EVENTS),
    show_default=True,
    type=click.Path(),
    help="The base event log every candidate trains on.",
)
@click.option(
    "--new-events",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="More logged events (CSV/JSONL, e.g. an export); repeatable. Redis is read as well.",
)
@click.option(
    "--redis/--no-redis",
    "read_redis",
    default=True,
    show_default=True,
    help="Read the events posted through the API from Redis (REDIS_URL; skipped when unset).",
)
@click.option(
    "--gate-set",
    "--gate-events",
    "gate_events",
    default=str(DEFAULT_GATE_EVENTS),
    show_default=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Fixed held-out gate set (its own users); no training ever sees it.",
)
@click.option(
    "--margin",
    default=0.0,
    show_default=True,
    type=float,
    help="Promote when candidate ndcg@10 >= current - margin (negative: demand a gain).",
)
@click.option(
    "--registry",
    default=None,
    envvar=REGISTRY_ENV,
    type=click.Path(file_okay=False),
    help=f"Registry ROOT; the ranker is ROOT/recs-ranker (env {REGISTRY_ENV}).",
)
@click.option(
    "--model-dir",
    default=None,
    envvar=MODEL_DIR_ENV,
    type=click.Path(file_okay=False),
    help=f"The served entry, when --registry is not given (env {MODEL_DIR_ENV}).",
)
@click.option("--created-by", default=None, help="Recorded in the version (default: $USER).")
@_training_options
@clean_errors
def retrain_command(
    items: str,
    events: str,
    new_events: tuple[str, ...],
    read_redis: bool,
    gate_events: str,
    margin: float,
    registry: str | None,
    model_dir: str | None,
    created_by: str | None,
    base_model: str | None,
    training: dict[str, Any],
) -> None:
    """Retrain the ranker on the base + newly logged events; gate on ndcg@10; promote or reject.

    Prints one JSON object (candidate and live version, the gate's numbers and reason). Exit
    code 0 whether promoted or rejected; the running API follows a promotion by itself.
    """
    from threefold.apps.recs.events import load_events
    from threefold.apps.recs.retrain import RetrainData, entry_for, retrain_ranker

    entry = entry_for(registry, model_dir)
    catalog, base = _load(items, events)
    logged = [e for path in new_events for e in load_events(path, known_items=catalog)]
    if read_redis:
        logged += _posted_events(catalog)
    data = RetrainData(
        catalog=catalog,
        base_events=base,
        new_events=logged,
        gate_events=load_events(gate_events, known_items=catalog),
        gate_source=str(Path(gate_events).resolve()),
    )
    settings = _settings(10, training)
    emit_json(
        retrain_ranker(
            entry,
            data,
            settings=settings,
            base_model=base_model,
            margin=margin,
            created_by=created_by,
        )
    )


def _redis_state() -> RedisState | None:
    """The API's Redis state (REDIS_URL, the app's prefix); None when REDIS_URL is unset."""
    from prometheus_client import CollectorRegistry

    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.metrics import RecsMetrics
    from threefold.apps.recs.resources import open_redis
    from threefold.core.settings import load_settings
    from threefold.streaming.connections import RedisSettings

    redis = load_settings(RedisSettings, "REDIS_")
    if redis.url is None:
        return None
    settings = RecsConfig.from_env(redis_timeout_seconds=5.0)
    return open_redis(settings, redis, RecsMetrics(CollectorRegistry()))


def _posted_events(catalog: Catalog) -> list[Event]:
    """The events posted through the API (Redis at REDIS_URL); [] when REDIS_URL is unset."""
    from threefold.core.errors import ServiceError

    state = _redis_state()
    if state is None:
        return []
    events = state.posted_events()
    if events is None:
        raise ServiceError(
            f"Redis at {state.settings.display_url} does not answer: the events posted through "
            "the API cannot be read. Fix: start Redis or point REDIS_URL at it, or pass "
            "--no-redis to retrain on the files only"
        )
    known = [e for e in events if e.item_id in catalog]
    if len(known) < len(events):
        click.echo(
            f"skipped {len(events) - len(known)} events of items no longer in the catalog", err=True
        )
    return known


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
