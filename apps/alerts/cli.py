"""`threefold alerts ...` (run, train, simulate, webhooks) and `threefold serve dashboard`.

Only click is imported at module level; models, Kafka and Redis load inside the commands.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from threefold.core.base_model import BASE_MODEL_ENV
from threefold.core.command_line import clean_errors, emit_json

if TYPE_CHECKING:
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.state.redis_webhooks import RedisWebhookOutbox
    from threefold.streaming.connections import KafkaSettings, RedisSettings
    from threefold.streaming.runner import ConsumerRunner

logger = logging.getLogger("threefold.alerts")
SAMPLE = Path(__file__).resolve().parent / "data" / "headlines_sample.csv"
DEFAULT_MODE_REASON = (
    "one multi-task model (one forward pass per headline), the default; its training path is "
    "in strategy and strategy_reason"
)


@click.group("alerts")
def alerts() -> None:
    """Financial-news sentiment alerting: train the classifiers, run the Kafka consumer."""


_CONFIG_OPTIONS = [
    click.option(
        "--bootstrap",
        default=None,
        help="Kafka bootstrap servers [env KAFKA_BOOTSTRAP_SERVERS; TLS/SASL from KAFKA_*].",
    ),
    click.option("--redis-url", default=None, help="Redis URL for window state [env REDIS_URL]."),
    click.option("--topic-model", "topic_model_dir", default=None, help="Topic classifier dir."),
    click.option(
        "--sentiment-model", "sentiment_model_dir", default=None, help="Sentiment classifier dir."
    ),
    click.option("--input-topic", default=None, help="Topic to consume [news]."),
    click.option("--scored-topic", default=None, help="Topic for scored messages [news-scored]."),
    click.option("--alerts-topic", default=None, help="Topic for alerts [news-alerts]."),
    click.option("--dead-letter-topic", default=None, help="Dead-letter topic [news-dead-letter]."),
    click.option("--group-id", default=None, help="Consumer group [threefold-alerts]."),
    click.option("--window", "window_size_s", type=int, default=None, help="Window seconds [300]."),
    click.option("--slide", "window_slide_s", type=int, default=None, help="Slide s [= window]."),
    click.option("--grace", "grace_s", type=int, default=None, help="Grace for late msgs s [60]."),
    click.option(
        "--quiet-close",
        "quiet_close_s",
        type=float,
        default=None,
        help="Seconds of silence after which the last windows close [60; 0 = never].",
    ),
    click.option("--min-volume", type=int, default=None, help="Messages per window to alert [10]."),
    click.option("--z-threshold", type=float, default=None, help="One-sided z to alert [2.33]."),
    click.option("--share-margin", type=float, default=None, help="Share over baseline [0.15]."),
    click.option("--cooldown", "cooldown_s", type=int, default=None, help="Per-key cool-down s."),
    click.option("--webhook", "webhook_url", default=None, help="POST alerts here too."),
    click.option("--redis-prefix", default=None, help="Key prefix in Redis [threefold:alerts:]."),
    click.option("--companies", "companies_path", default=None, help="name,ticker,aliases CSV."),
    click.option("--max-batch", type=int, default=None, help="Messages per micro-batch [64]."),
    click.option("--max-wait-ms", type=int, default=None, help="Wait to fill a batch ms [200]."),
    click.option("--torch-threads", type=int, default=None, help="torch CPU threads [default]."),
]


def _config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_CONFIG_OPTIONS):
        command = option(command)
    return command


def _config(overrides: dict[str, Any]) -> AlertsConfig:
    from threefold.apps.alerts.config import AlertsConfig

    renamed = dict(overrides)
    renamed.pop("redis_url", None)
    renamed["bootstrap_servers"] = renamed.pop("bootstrap", None)
    return AlertsConfig.from_env(**renamed)


def _redis(redis_url: str | None) -> RedisSettings:
    from threefold.core.settings import load_settings
    from threefold.streaming.connections import RedisSettings

    return load_settings(RedisSettings, "REDIS_", url=redis_url)


def _kafka(config: AlertsConfig) -> KafkaSettings:
    """KAFKA_* settings (TLS, SASL); the bootstrap servers are the config's (--bootstrap wins)."""
    from threefold.core.settings import load_settings
    from threefold.streaming.connections import KafkaSettings

    return load_settings(
        KafkaSettings, "KAFKA_", bootstrap_servers=config.bootstrap_servers or None
    )


class _StopDuringStartUp(BaseException):
    """SIGTERM/SIGINT before the consumer runs (a BaseException: no `except Exception` in the
    model loading or Kafka code may swallow it)."""


def _stop_during_start_up(signum: int, _frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second signal acts as the default would
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise _StopDuringStartUp(signal.Signals(signum).name)


@alerts.command("run")
@_config_options
@click.option("--metrics-port", type=int, default=None, help="Serve /metrics on this port.")
@click.option("--stop-after", type=float, default=None, help="Stop after N seconds.")
@click.option("--create-topics/--no-create-topics", default=True, show_default=True)
@clean_errors
def run_command(metrics_port: int | None, stop_after: float | None, create_topics: bool, **kw):
    """Consume news, publish scored messages and alerts (needs Kafka and Redis)."""
    # First thing: a container's PID 1 never gets a signal it has no handler for, and loading
    # the models or waiting for Kafka takes long enough for a SIGTERM to arrive meanwhile.
    stop_signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, _stop_during_start_up) for sig in stop_signals}
    with ExitStack() as started:
        for sig, handler in previous.items():  # the caller's again at the end
            started.callback(signal.signal, sig, handler)
        try:
            runner = _start_consumer(started, metrics_port, create_topics, kw)
        except _StopDuringStartUp as stop:
            logger.warning("received %s during start-up: stopping before consuming", stop)
            emit_json({"stopped": True, "stats": None})
            return
        stats = runner.run(stop_after=stop_after)
    emit_json({"stopped": True, "stats": vars(stats)})


def _start_consumer(
    started: ExitStack, metrics_port: int | None, create_topics: bool, kw: dict[str, Any]
) -> ConsumerRunner:
    """`alerts run` up to consuming: models loaded, topics there, its signal handlers set."""
    from threefold.apps.alerts.consumer import build_runner
    from threefold.core.device import set_torch_threads
    from threefold.core.settings import public_dict
    from threefold.core.web import configure_json_logging

    configure_json_logging()
    config = _config({**kw, "metrics_port": metrics_port})
    kafka = _kafka(config)
    redis = _redis(kw.get("redis_url"))
    logger.info("alerts consumer settings: %s", json.dumps(config.public_dict(), default=str))
    logger.info(
        "connections: kafka %s, redis %s",
        json.dumps(public_dict(kafka), default=str),
        json.dumps(public_dict(redis), default=str),
    )
    set_torch_threads(config.torch_threads)
    runner, processor = build_runner(config, redis, kafka=kafka)
    started.callback(processor.publisher.close)
    if create_topics:
        from threefold.streaming.kafka_config import ensure_topics

        ensure_topics(
            kafka,
            [
                config.input_topic,
                config.scored_topic,
                config.alerts_topic,
                config.dead_letter_topic,
            ],
        )
    if config.metrics_port:
        from threefold.streaming.metrics import serve_metrics

        serve_metrics(runner.metrics.registry, config.metrics_port, config.metrics_addr)
    runner.install_signal_handlers()  # from here on a signal finishes the batch, then stops
    return runner


@alerts.command("train")
@click.option(
    "--data",
    "data_path",
    default=str(SAMPLE),
    show_default=True,
    help="CSV/JSON/JSONL with text, topic and sentiment columns.",
)
@click.option("--topic-data", default=None, help="Separate file for the topic classifier.")
@click.option("--sentiment-data", default=None, help="Separate file for the sentiment one.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--topic-column", default="topic", show_default=True)
@click.option("--sentiment-column", default="sentiment", show_default=True)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Writes one multi-task model in OUT, or OUT/topic and OUT/sentiment; a folder that "
    "is a registry entry gets a new version instead.",
)
@click.option(
    "--registry",
    default=None,
    type=click.Path(file_okay=False),
    help="Publish into registry ROOT instead: ROOT/alerts-multitask, or ROOT/alerts-topic and "
    "ROOT/alerts-sentiment, each a new current version with metadata.",
)
@click.option(
    "--multitask/--separate",
    default=None,
    help="One body with a topic and a sentiment head (one forward pass per headline; with "
    "--topic-data / --sentiment-data each head learns from its own file), or two classifiers. "
    "[default: one model; small data (under 128 examples per label on average) takes the "
    "contrastive path, for both tasks at once]",
)
@click.option(
    "--base",
    default=None,
    envvar=BASE_MODEL_ENV,
    help="Base model directory [default: packaged MiniLM].",
)
@click.option("--epochs", type=float, default=4.0, show_default=True)
@click.option("--learning-rate", type=float, default=5e-5, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--max-length", type=int, default=64, show_default=True)
@click.option("--max-steps", type=int, default=-1, show_default=True)
@click.option("--eval-fraction", type=float, default=0.2, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bars (logs only).")
@clean_errors
def train_command(
    data_path: str,
    topic_data: str | None,
    sentiment_data: str | None,
    text_column: str,
    topic_column: str,
    sentiment_column: str,
    out: str | None,
    registry: str | None,
    base: str | None,
    no_progress: bool,
    multitask: bool | None,
    **training: Any,
) -> None:
    """Fine-tune the topic and the sentiment classifier (like `threefold classifier train`):
    one multi-task model (OUT, or ROOT/alerts-multitask) or two (OUT/topic and OUT/sentiment,
    or ROOT/alerts-topic and ROOT/alerts-sentiment); the JSON says which (`mode`) and why."""
    from threefold.core.classifier import META_FILE as CLASSIFIER_META
    from threefold.core.classifier_training import train_classifier
    from threefold.core.errors import ConfigError
    from threefold.core.labelled_data import read_labelled
    from threefold.core.multitask import META_FILE as MULTITASK_META
    from threefold.core.registry import check_entry_holds
    from threefold.core.training_config import TrainingConfig

    if bool(out) == bool(registry):
        raise ConfigError("pass exactly one of --out DIR or --registry ROOT")
    sources = {
        "topic": (topic_data or data_path, topic_column),
        "sentiment": (sentiment_data or data_path, sentiment_column),
    }
    if multitask is None:
        multitask, reason = True, DEFAULT_MODE_REASON
    else:
        reason = f"--{'multitask' if multitask else 'separate'} was given"
    logger.info("alerts train: %s (%s)", "one multi-task model" if multitask else "two", reason)
    mode = {"mode": "multitask" if multitask else "separate", "mode_reason": reason}
    markers = (CLASSIFIER_META, MULTITASK_META)
    for name in ["joint"] if multitask else list(sources):
        check_entry_holds(_target(out, registry, name), markers, "an alerts classifier")
    if multitask:
        sets = _read_task_sets(sources, text_column)
    else:
        sets = {
            task: read_labelled(path, text_column, column)
            for task, (path, column) in sources.items()
        }
    _check_two_labels(sets, sources)  # every task's data, before any model is trained
    if multitask:
        target = _target(out, registry, "joint")
        _train_multitask(
            sets,
            [path for path, _ in sources.values()],
            text_column,
            target,
            bool(registry),
            base,
            no_progress,
            training,
            mode,
        )
        return

    models = {}
    for name, (texts, labels) in sets.items():
        config = TrainingConfig(
            text_column=text_column,
            label_column=sources[name][1],
            output_progress=not no_progress,
            **training,
        )
        models[name] = train_classifier(texts, labels, base_model=base, config=config)
    summary: dict[str, Any] = dict(mode)
    for name, model in models.items():  # both trained: neither is written without its twin
        path = sources[name][0]
        target = _target(out, registry, name)
        evaluation = model.metrics.get("eval") or {}
        summary[name] = {
            "out": str(target),
            "version": model.version,
            "registry_version": _save(model, target, [path], evaluation, bool(registry)),
            "labels": model.labels,
            "eval_accuracy": evaluation.get("accuracy"),
            "eval_macro_f1": evaluation.get("macro_f1"),
            "train_seconds": model.train_seconds,
        }
    emit_json(summary)


def _check_two_labels(
    sets: dict[str, tuple[list[str], list[str]]], sources: dict[str, tuple[str, str]]
) -> None:
    """DataError unless each task's labels hold two values or more; it names the task's file,
    column and the option that chose the column (`--topic-column`, `--sentiment-column`)."""
    from threefold.core.errors import DataError

    for task, (_texts, labels) in sets.items():
        names = sorted(set(labels))
        if len(names) < 2:
            path, column = sources[task]
            found = f"all {names[0]!r}" if names else "missing"
            raise DataError(
                f"the {task} labels are {found} ({len(labels)} rows); a classifier needs "
                f"examples of at least two labels. Fix: add rows of other labels, or check "
                f"that --{task}-column names the {task} column",
                path=path,
                column=column,
            )


def _read_task_sets(
    sources: dict[str, tuple[str, str]], text_column: str
) -> dict[str, tuple[list[str], list[str]]]:
    """Each task's (texts, labels) from its (file, label column) of `sources`."""
    from threefold.core.tables import read_records

    sets = {}
    for task, (path, column) in sources.items():
        columns = (text_column, column)
        records = read_records(path, required=columns, non_empty=columns)
        sets[task] = (
            [str(r.values[text_column]).strip() for r in records],
            [str(r.values[column]).strip() for r in records],
        )
    return sets


def _train_multitask(
    sets: dict[str, tuple[list[str], list[str]]],
    files: list[str],
    text_column: str,
    out: Path,
    publish: bool,
    base: str | None,
    no_progress: bool,
    training: dict[str, Any],
    mode: dict[str, str],
) -> None:
    """One body, a head per task, each learning from its own (texts, labels) of `sets`."""
    from threefold.core.multitask import merge_task_data, train_multitask
    from threefold.core.training_config import TrainingConfig

    texts, targets = merge_task_data(sets)
    config = TrainingConfig(text_column=text_column, output_progress=not no_progress, **training)
    model = train_multitask(texts, targets, base_model=base, config=config)
    evaluation = model.metrics.get("eval") or {}
    emit_json(
        {
            **mode,
            "out": str(out),
            "version": model.version,
            "registry_version": _save(model, out, files, evaluation, publish),
            "tasks": model.tasks,
            "n_train_per_task": model.metrics.get("n_train_per_task"),
            "eval": {
                task: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}
                for task, r in evaluation.items()
            },
            "strategy": model.metrics.get("strategy"),
            "strategy_reason": model.metrics.get("strategy_reason"),
            "stop_reason": model.metrics.get("stop_reason"),
            "train_seconds": model.train_seconds,
        }
    )


def _target(out: str | None, registry: str | None, name: str) -> Path:
    """Where a trained model goes: OUT/<name> (OUT itself for the multi-task model) or its
    registry entry ROOT/alerts-<name>."""
    from threefold.apps.alerts.model_source import ENTRY_NAMES

    if registry:
        return Path(registry) / ENTRY_NAMES[name]
    return Path(out or ".") if name == "joint" else Path(out or ".") / name


def _save(model: Any, target: Path, data: list[str], evaluation: dict, publish: bool) -> str | None:
    """Save into a plain folder (returns None), or publish a new current version into the
    registry entry `target` with its metadata (returns the version). A folder that already is
    an entry always gets a new version."""
    from threefold.core.files import share_as_umask_allows
    from threefold.core.registry import ModelEntry, data_fingerprint

    if not publish and not ModelEntry.is_entry(target):
        model.save(target)
        share_as_umask_allows(target)  # safetensors writes owner-only files
        return None
    files = list(dict.fromkeys(data))
    return ModelEntry(target).publish(
        lambda folder, _version: model.save(folder),
        metadata={
            "app": "alerts",
            "data_fingerprint": data_fingerprint(*(Path(f) for f in files)),
            "training_data": files,
            "metrics": _eval_metrics(evaluation),
            "model_fingerprint": model.version,
        },
    )


def _eval_metrics(evaluation: dict) -> dict:
    """Accuracy and macro-F1 of a classifier's eval report (per task for a multi-task one)."""
    if "macro_f1" in evaluation:
        return {k: evaluation[k] for k in ("accuracy", "macro_f1")}
    return {
        task: {k: report[k] for k in ("accuracy", "macro_f1")}
        for task, report in evaluation.items()
        if isinstance(report, dict)
    }


@click.command("alerts")
@click.option(
    "--task",
    type=click.Choice(["sentiment", "topic"]),
    default="sentiment",
    show_default=True,
    help="Which classifier to retrain (a multi-task entry retrains both heads).",
)
@click.option(
    "--registry",
    default=None,
    envvar="THREEFOLD_MODELS_DIR",
    help="Registry ROOT: retrain ROOT/alerts-<task> (or ROOT/alerts-multitask when it exists) "
    "[env THREEFOLD_MODELS_DIR; default: the entry THREEFOLD_ALERTS_<TASK>_MODEL_DIR names].",
)
@click.option("--topic-model", "topic_model_dir", default=None, help="Topic entry dir.")
@click.option("--sentiment-model", "sentiment_model_dir", default=None, help="Sentiment entry dir.")
@click.option(
    "--training-data",
    default=None,
    help="Base CSV with text,topic,sentiment [env THREEFOLD_ALERTS_TRAINING_DATA; shipped sample].",
)
@click.option(
    "--gate-set",
    "--gate-data",
    "gate_data",
    default=None,
    help="Fixed gate CSV no training sees [env THREEFOLD_ALERTS_GATE_DATA; shipped gate set].",
)
@click.option(
    "--margin",
    "gate_margin",
    type=float,
    default=None,
    help="Macro-F1 the candidate may lose and still go live [env THREEFOLD_ALERTS_GATE_MARGIN; 0].",
)
@click.option(
    "--redis-url", default=None, help="Redis with the analysts' corrections [env REDIS_URL]."
)
@click.option("--redis-prefix", default=None, help="Key prefix the dashboard uses.")
@click.option("--base", default=None, envvar=BASE_MODEL_ENV, help="Base model directory.")
@click.option(
    "--created-by", "--by", "created_by", default=None, help="Recorded as created_by [$USER]."
)
@click.option("--epochs", type=float, default=4.0, show_default=True)
@click.option("--learning-rate", type=float, default=5e-5, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--max-length", type=int, default=64, show_default=True)
@click.option("--max-steps", type=int, default=-1, show_default=True)
@click.option("--warmup-ratio", type=float, default=0.1, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bars (logs only).")
@clean_errors
def retrain_command(
    task: str,
    registry: str | None,
    redis_url: str | None,
    base: str | None,
    created_by: str | None,
    no_progress: bool,
    epochs: float,
    learning_rate: float,
    batch_size: int,
    max_length: int,
    max_steps: int,
    warmup_ratio: float,
    seed: int,
    **settings: Any,
) -> None:
    """Retrain on the base CSV plus the analysts' corrections; gate on macro-F1; publish.

    Prints {"app", "model", "candidate_version", "current_version", "gate", "promoted",
    "live_version", ...}. Promoted and rejected both exit 0.
    """
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.resources import open_signal_store
    from threefold.apps.alerts.retrain import retrain
    from threefold.core.errors import ConfigError, ServiceError
    from threefold.core.training_config import TrainingConfig

    config = AlertsConfig.from_env(**settings)
    entry = _retrain_entry(config, task, registry)
    redis = _redis(redis_url)
    if not redis.url:
        raise ConfigError(
            "retrain reads the analysts' corrections from Redis: set REDIS_URL (or --redis-url) "
            "to the dashboard's Redis"
        )
    try:
        corrections = open_signal_store(config, redis).corrections()
    except Exception as exc:
        if type(exc).__module__.startswith("redis"):
            raise ServiceError(f"could not read the corrections from Redis ({exc!r})") from exc
        raise
    training = TrainingConfig(
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_length=max_length,
        max_steps=max_steps,
        warmup_ratio=warmup_ratio,
        seed=seed,
        eval_fraction=0.0,  # the gate set is the evaluation; train on every example
        output_progress=not no_progress,
    )
    emit_json(
        retrain(
            entry,
            task=task,
            training_data=config.training_data,
            gate_data=config.gate_data,
            corrections=corrections,
            config=training,
            margin=config.gate_margin,
            base_model=base,
            created_by=created_by,
        )
    )


def _retrain_entry(config: AlertsConfig, task: str, registry: str | None) -> Any:
    from threefold.apps.alerts.model_source import ENTRY_NAMES
    from threefold.core.errors import ConfigError
    from threefold.core.registry import ModelEntry

    if registry:
        joint = Path(registry) / ENTRY_NAMES["joint"]
        return ModelEntry(
            joint if ModelEntry.is_entry(joint) else Path(registry) / ENTRY_NAMES[task]
        )
    path = getattr(config, f"{task}_model_dir") or (
        config.topic_model_dir if not config.sentiment_model_dir else ""
    )
    if not path or not ModelEntry.is_entry(path):
        raise ConfigError(
            f"retrain publishes into a registry entry, and {path or 'no directory'!r} is not one "
            f"(THREEFOLD_ALERTS_{task.upper()}_MODEL_DIR / --{task}-model). Fix: pass --registry "
            "ROOT (after `threefold alerts train --registry ROOT`) or point the setting at "
            f"ROOT/{ENTRY_NAMES[task]}"
        )
    return ModelEntry(path)


@alerts.command("simulate")
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@_config_options
@click.option("--batch", type=int, default=32, show_default=True)
@clean_errors
def simulate_command(path: str, batch: int, **kw: Any) -> None:
    """Run a JSONL file through parse -> score -> windows -> surge in memory; print alerts.

    No Kafka or Redis: a dry run of the same chain the consumer runs.
    """
    import time

    from threefold.apps.alerts.messages import InvalidMessage, parse_message
    from threefold.apps.alerts.model_source import open_scorer
    from threefold.apps.alerts.pipeline import AlertPipeline
    from threefold.apps.alerts.state.memory import InMemoryStateStore
    from threefold.core.tables import read_records

    config = _config(kw)
    scorer = open_scorer(
        config.topic_model_dir, config.sentiment_model_dir, config.companies_path or None
    )
    store = InMemoryStateStore()
    pipeline = AlertPipeline.from_config(config, store)
    items, invalid = [], 0
    for record in read_records(path):
        try:
            items.append(parse_message(dict(record.values), fallback_time=time.time()))
        except InvalidMessage as exc:
            invalid += 1
            logger.warning("line %d: %s", record.line, exc.reason)
    for start in range(0, len(items), batch):
        pipeline.process(scorer.score(items[start : start + batch]))
    alerts_found = store.pending_alerts()
    store.ack_alerts(alerts_found)
    for alert in alerts_found:
        emit_json(alert)
    click.echo(f"{len(items)} messages, {invalid} invalid, {len(alerts_found)} alert(s)", err=True)


@alerts.group("webhooks")
def webhooks() -> None:
    """The alert webhook's deliveries its receiver rejected for good: list them, re-send them."""


_REDIS_OPTIONS = [
    click.option(
        "--redis-url", default=None, help="Redis the alerts consumer writes to [env REDIS_URL]."
    ),
    click.option(
        "--redis-prefix",
        default=None,
        help="Key prefix the consumer uses [env THREEFOLD_ALERTS_REDIS_PREFIX].",
    ),
]


def _redis_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_REDIS_OPTIONS):
        command = option(command)
    return command


@contextmanager
def _webhook_outbox(
    redis_url: str | None, redis_prefix: str | None
) -> Iterator[RedisWebhookOutbox]:
    """The consumers' webhook outbox in Redis; a Redis that does not answer is a ServiceError."""
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.resources import REDIS_FIX, open_state_store
    from threefold.core.errors import ServiceError

    config = AlertsConfig.from_env(redis_prefix=redis_prefix)
    redis = _redis(redis_url)
    try:
        yield open_state_store(config, redis).webhook_outbox()
    except Exception as exc:
        if type(exc).__module__.startswith("redis"):
            raise ServiceError(
                f"could not use the webhook outbox in Redis at {redis.display_url} ({exc!r}). "
                f"Fix: check that Redis is up, or {REDIS_FIX}"
            ) from exc
        raise


@webhooks.command("rejected")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@_redis_options
@clean_errors
def rejected_command(limit: int, redis_url: str | None, redis_prefix: str | None) -> None:
    """Print the latest rejected deliveries, newest first, as a JSON list (alert_id, status,
    the start of the receiver's answer, rejected_at, the alert's summary)."""
    from datetime import UTC, datetime

    with _webhook_outbox(redis_url, redis_prefix) as outbox:
        found = outbox.rejected(limit)
    emit_json(
        [
            {
                "alert_id": r.key,
                "status": r.status,
                "answer": r.answer,
                "rejected_at": datetime.fromtimestamp(r.at, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "summary": r.payload.get("summary"),
            }
            for r in found
        ]
    )


@webhooks.command("resend")
@click.argument("alert_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Re-send every rejected delivery.")
@_redis_options
@clean_errors
def resend_command(
    alert_ids: tuple[str, ...], everything: bool, redis_url: str | None, redis_prefix: str | None
) -> None:
    """Move rejected deliveries (ALERT_IDs, or --all) back into the outbox, due now: the running
    consumers deliver them. Run it once the receiver is fixed.

    Prints {"requeued": [...], "not_found": [...]}: not_found are ids not in the record of
    rejections. Exits 1 when any ALERT_ID was not found (the others are re-sent all the same);
    --all with nothing on record exits 0. A re-send never pushes a waiting delivery out of the
    outbox.
    """
    from threefold.core.errors import ConfigError
    from threefold.core.webhook import REJECTED_LIMIT

    if everything == bool(alert_ids):
        found = "both" if everything else "neither"
        raise ConfigError(
            f"expected either --all or the ALERT_IDs to re-send, found {found}. Fix: pass one "
            "(`threefold alerts webhooks rejected` lists the rejected ones)"
        )
    with _webhook_outbox(redis_url, redis_prefix) as outbox:
        done = outbox.requeue_rejected(None if everything else alert_ids)
    emit_json({"requeued": done.requeued, "not_found": done.not_found})
    if everything and not done.requeued:
        click.echo("nothing to re-send: no rejected delivery is on record", err=True)
    if done.not_found:
        asked = len(dict.fromkeys(alert_ids))
        resent = f" (re-sent: {', '.join(done.requeued)})" if done.requeued else ""
        click.echo(
            f"Error: {len(done.not_found)} of the {asked} alert ids are not in the record of "
            f"rejected deliveries: {', '.join(done.not_found)}{resent}. Each was never "
            "rejected, is back in the outbox already, or was pushed out of the newest "
            f"{REJECTED_LIMIT:,} kept; `threefold alerts webhooks rejected` lists the ones that "
            "can be re-sent",
            err=True,
        )
        raise click.exceptions.Exit(1)


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8003, show_default=True)
@click.option("--redis-url", default=None, help="Redis with the consumer's state [env REDIS_URL].")
@click.option("--redis-prefix", default=None, help="Key prefix the consumer uses.")
@clean_errors
def serve_command(host: str, port: int, redis_url: str | None, redis_prefix: str | None) -> None:
    """Serve the alerts dashboard (charts, live alert feed, JSON API).

    Without a Redis URL it serves its pages and answers the data API with 503 (degraded).
    """
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.resources import REDIS_FIX, open_resources
    from threefold.apps.alerts.web import create_app
    from threefold.core.web import configure_json_logging

    configure_json_logging()
    config = AlertsConfig.from_env(redis_prefix=redis_prefix)
    redis = _redis(redis_url)
    if not redis.url:
        logger.warning("no Redis URL: the dashboard runs degraded. Fix: %s", REDIS_FIX)
    app = create_app(config, open_resources(config, redis))
    from threefold.core.server_errors import JsonErrorRequestHandler

    app.run(host=host, port=port, threaded=True, request_handler=JsonErrorRequestHandler)
