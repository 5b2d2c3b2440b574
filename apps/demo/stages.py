"""The eight stages of `threefold demo`, run in order by `run_demo`.

Stages (messages on stderr, URLs on stdout):
1. the apps' ports; Redis and a Kafka-protocol broker: embedded, or REDIS_URL /
   KAFKA_BOOTSTRAP_SERVERS;
2. the alert classifiers (topic, sentiment), trained from the shipped sample once and cached;
3. the FAQ bot (cached) and the catalog index (vectors cached); the apps, the storefront
   embedding the chat widget;
4. the QA, recs, dashboard and hub servers plus the alerts consumer;
5. the sample news scenario replayed into the input topic;
6. the alert it raises, read back from the alerts topic;
7. one turn of the learning loop: a question the FAQ bot declines, reviewed into the knowledge
   base through the review API, answered by the new bot version (on a copy of the cached bot);
8. the URLs and "ready". Ctrl-C or SIGTERM stops everything, embedded services included.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from threefold.apps.demo.config import DemoOptions

if TYPE_CHECKING:
    from threefold.apps.demo.stack import ConsumerHealth
    from threefold.streaming.connections import KafkaSettings, RedisSettings

STAGES = 8
APP_NAMES = ("hub", "qa", "recs", "dashboard")
DEMO_AGENT = "Demo agent"  # signs in to the QA agent console with the token printed at start
DEMO_ANALYST = "Demo analyst"  # corrects headlines on the dashboard with the token printed
# Loggers whose INFO lines would bury the stage messages; `threefold -v demo` shows them.
QUIET_LOGGERS = {"kafka": "WARNING", "werkzeug": "WARNING", "threefold": "WARNING"}
QUIET_LOGGERS |= {"transformers": "ERROR", "sentence_transformers": "WARNING"}


class StageLog:
    """`[n/8] name: message` lines on stderr, with each stage's duration when it ends."""

    def __init__(self, total: int = STAGES) -> None:
        self.total = total
        self.number = 0
        self.name = ""
        self.started = time.monotonic()

    def begin(self, number: int, name: str, message: str) -> None:
        self.number, self.name, self.started = number, name, time.monotonic()
        self._echo(message)

    def note(self, message: str) -> None:
        self._echo(message)

    def done(self, message: str) -> None:
        self._echo(f"{message} ({time.monotonic() - self.started:.1f} s)")

    def _echo(self, message: str) -> None:
        prefix = f"[{self.number}/{self.total}] {self.name}" if self.number else "demo"
        click.echo(f"{prefix}: {message}", err=True)


@dataclass
class DemoState:
    """What the running demo is made of (filled in stage by stage)."""

    run_id: str
    redis: RedisSettings | None = None  # the given settings, or the embedded server's
    kafka: KafkaSettings | None = None  # the given settings, or the embedded broker's
    servers: dict[str, Any] = field(default_factory=dict)
    alerts_config: Any = None
    consumer: Any = None
    alert: dict | None = None
    alert_problem: str = ""
    agent_token: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    analyst_token: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    loop: Any = None  # the learning loop's CheckResult

    def url(self, name: str) -> str:
        return self.servers[name].url

    def consumer_health(self) -> ConsumerHealth:
        """The alerts consumer's health (the hub's /healthz); "starting" before stage 4 ends."""
        from threefold.apps.demo.stack import ConsumerHealth

        if self.consumer is None:
            return ConsumerHealth("starting", reason="the alerts consumer has not started yet")
        return self.consumer.health()


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    def handle(signum: int, _frame: Any) -> None:
        raise _Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """While stopping, a second Ctrl-C must not cut the cleanup short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


# ------------------------------------------------------------------------------- stages


def start_services(options: DemoOptions, stack: ExitStack, state: DemoState, log: StageLog) -> None:
    """Bind the apps' ports; the given Redis and Kafka or embedded ones."""
    from threefold.apps.demo.stack import bind_servers
    from threefold.streaming.services import KAFKA_BOOTSTRAP_ENV, REDIS_URL_ENV, connected

    log.begin(1, "services", "ports for the apps, Redis and a Kafka-protocol broker")
    state.servers = bind_servers(options.host, APP_NAMES, options.port_base)
    for server in state.servers.values():
        stack.callback(server.stop)
    ports = ", ".join(f"{name} {server.port}" for name, server in state.servers.items())
    log.note(f"ports reserved on {options.host}: {ports}")
    state.redis, state.kafka = stack.enter_context(connected(options.redis, options.kafka))
    found = [
        f"Redis {state.redis.display_url} (from {REDIS_URL_ENV})"
        if options.redis.url
        else f"embedded redis-server at {state.redis.url}",
        f"Kafka {state.kafka.bootstrap_servers} ({state.kafka.security_protocol}, "
        f"from {KAFKA_BOOTSTRAP_ENV})"
        if options.kafka.bootstrap_servers
        else f"embedded tansu broker at {state.kafka.bootstrap_servers}",
    ]
    log.done(", ".join(found))


def train_models(options: DemoOptions, cache: Path, log: StageLog) -> Any:
    from threefold.apps.alerts.config import DATA_DIR
    from threefold.apps.demo.models import CLASSIFIER_STEPS, train_alert_models
    from threefold.core.base_model import base_model_from_env

    log.begin(2, "models", f"topic and sentiment model, one body and two heads (cache {cache})")
    if options.retrain:
        log.note("--retrain: training them again")
    started = time.monotonic()
    models = train_alert_models(
        DATA_DIR / "headlines_sample.csv",
        cache / "models",
        base_model=base_model_from_env(),
        retrain=options.retrain,
        progress=options.progress,
    )
    if models.built:
        log.done(
            f"trained ({CLASSIFIER_STEPS} steps) in {time.monotonic() - started:.0f} s "
            f"-> {models.path}"
        )
    else:
        log.done(f"reused {models.path}")
    return models


def build_apps(
    options: DemoOptions,
    cache: Path,
    models: Any,
    state: DemoState,
    stack: ExitStack,
    log: StageLog,
) -> dict[str, Any]:
    """Bind the four servers, build the FAQ bot, then each app knowing every origin."""
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.resources import open_resources as open_dashboard_resources
    from threefold.apps.alerts.web import create_app as create_dashboard
    from threefold.apps.demo.config import HubConfig
    from threefold.apps.demo.models import build_faq_bot, prepare_recs_cached
    from threefold.apps.demo.stack import browser_origins
    from threefold.apps.demo.web.app import create_app as create_hub
    from threefold.apps.qa.config import SAMPLE_KB, QAConfig
    from threefold.apps.qa.resources import open_resources as open_qa_resources
    from threefold.apps.qa.web import create_app as create_qa
    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.resources import open_resources as open_recs
    from threefold.apps.recs.web import create_app as create_recs
    from threefold.core.base_model import base_model_from_env
    from threefold.core.embedder import Embedder
    from threefold.core.settings import Secret

    log.begin(3, "build", "FAQ bot and catalog index")
    # The storefront (recs /store) embeds the chat widget, which calls the QA API from there.
    storefront_origins = browser_origins(state.servers["recs"])
    embedder = Embedder(base_model_from_env()).load()
    bot = build_faq_bot(
        SAMPLE_KB, cache / "qa", embedder, retrain=options.retrain, progress=options.progress
    )
    log.note(f"FAQ bot {'built' if bot.built else 'reused'} at {bot.path}")
    live_bot = run_copy_of_bot(bot.path, stack)
    prefix = f"threefold:demo:{state.run_id}:"
    qa_settings = QAConfig(
        bot_dir=str(live_bot),
        admin_token=Secret(state.admin_token),
        kb_path=None,
        redis_prefix=prefix + "qa:",
        allowed_origins=storefront_origins,
        agent_tokens=f"{DEMO_AGENT}:{state.agent_token}",
    )
    qa_resources = open_qa_resources(qa_settings, state.redis, encoder=embedder)
    qa = create_qa(qa_settings, qa_resources)
    stack.callback(qa_resources.close)  # before the scratch bot folder goes: stops the rebuild
    recs_settings = RecsConfig(redis_prefix=prefix + "recs:", chat_url=state.url("qa"))
    recs_redis = state.redis
    tuned, vectors = prepare_recs_cached(
        recs_settings, recs_redis, embedder, cache / "recs", retrain=options.retrain
    )
    recs = create_recs(
        recs_settings, open_recs(recs_settings, recs_redis, encoder=embedder, tuned=tuned)
    )
    if vectors is None:
        log.note("catalog index built (its vectors could not be cached)")
    else:
        reused = "embedded and cached" if vectors.built else "reused"
        log.note(f"catalog index built, vectors and ranking weights {reused} at {vectors.path}")
    topic = f"threefold-demo-{state.run_id}"
    models_dir = Path(models.path)
    state.alerts_config = AlertsConfig(
        input_topic=f"{topic}-news",
        scored_topic=f"{topic}-scored",
        alerts_topic=f"{topic}-alerts",
        dead_letter_topic=f"{topic}-dead-letter",
        group_id=f"{topic}-alerts",
        topic_model_dir=str(models_dir),  # one multi-task directory scores both tasks
        redis_prefix=prefix + "alerts:",
        analyst_tokens=Secret(f"{DEMO_ANALYST}:{state.analyst_token}"),
        bootstrap_servers=state.kafka.bootstrap_servers,
        allowed_origins=list(browser_origins(state.servers["hub"])),
    )
    dashboard = create_dashboard(
        state.alerts_config,
        open_dashboard_resources(state.alerts_config, state.redis),
    )
    hub = create_hub(
        HubConfig(
            qa_url=state.url("qa"), recs_url=state.url("recs"), dashboard_url=state.url("dashboard")
        ),
        consumer_health=state.consumer_health,
    )
    log.done("apps built")
    return {"hub": hub, "qa": qa, "recs": recs, "dashboard": dashboard}


def run_copy_of_bot(cached: Path, stack: ExitStack) -> Path:
    """A bot directory for this run only, holding a copy of the cached bot's current version.

    The learning loop edits the bot it serves; the cache stays as built, so every run starts
    from the same bot (and the loop's question is declined again).
    """
    import tempfile

    from threefold.apps.qa.store import BotStore

    # Removed after the QA app's resources close (`build_apps`): the bot's background rebuild
    # publishes nothing into it from then on.
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="threefold-demo-qa-")))
    source = BotStore(cached)
    version = source.current_version()
    entry = BotStore(scratch / "qa-bot").entry
    entry.publish_dir(
        source.version_dir(version),
        metadata={"created_by": f"demo: copy of the cached bot {cached.name} {version}"},
    )
    return entry.path


def start_apps(apps: dict[str, Any], state: DemoState, stack: ExitStack, log: StageLog) -> None:
    from threefold.apps.alerts.consumer import build_runner
    from threefold.apps.demo.stack import ConsumerThread
    from threefold.core.device import set_torch_threads
    from threefold.streaming.kafka_config import ensure_topics

    log.begin(4, "start", "HTTP servers and the alerts consumer")
    for name in APP_NAMES:
        state.servers[name].start(apps[name])
        log.note(f"{name} listening on {state.url(name)}")
    config = state.alerts_config
    ensure_topics(
        state.kafka,
        [config.input_topic, config.scored_topic, config.alerts_topic, config.dead_letter_topic],
    )
    set_torch_threads(config.torch_threads)
    runner, processor = build_runner(config, state.redis, kafka=state.kafka)
    state.consumer = ConsumerThread(runner, processor)
    state.consumer.start()
    stack.callback(state.consumer.stop)
    log.done(f"alerts consumer reading {config.input_topic}")


def replay_news(state: DemoState, progress: bool, log: StageLog) -> int:
    from threefold.apps.alerts.config import DATA_DIR
    from threefold.streaming.replay import replay_file

    scenario = DATA_DIR / "scenario_surge.jsonl"
    log.begin(5, "replay", f"{scenario.name} -> {state.alerts_config.input_topic}")
    result = replay_file(
        scenario,
        topic=state.alerts_config.input_topic,
        kafka=state.kafka,
        key_field="id",
        timestamp_field="published_at",
        progress=progress,
    )
    log.done(f"{result['sent']} messages sent")
    return int(result["sent"])


def await_alert(state: DemoState, sent: int, options: DemoOptions, log: StageLog) -> None:
    from tqdm import tqdm

    from threefold.apps.demo.stack import wait_for_alert

    topic = state.alerts_config.alerts_topic
    log.begin(6, "alert", f"scoring the stream; waiting for an alert on {topic}")
    timeout_s = options.timeout_s
    bar = tqdm(total=sent, unit="msg", desc="scored", file=sys.stderr, disable=not options.progress)
    with bar:

        def progress() -> None:
            bar.update(min(sent, state.consumer.processed) - bar.n)

        state.alert = wait_for_alert(state.kafka, topic, timeout_s=timeout_s, progress=progress)
        progress()
    if state.alert is None:
        health = state.consumer.health()
        state.alert_problem = f"no alert within {timeout_s:.0f} s"
        if not health.ok:
            state.alert_problem += f"; {health.reason}"
        elif health.restarts:
            state.alert_problem += (
                f"; the alerts consumer was restarted {health.restarts} time(s) after errors "
                "(log event alerts_consumer_restart)"
            )
        log.done(f"WARNING: {state.alert_problem}; raise --timeout, or add -v for the logs")
    else:
        log.done(f"alert {state.alert.get('alert_id')}: {state.alert.get('summary')}")


def learning_loop(state: DemoState, log: StageLog) -> None:
    from threefold.apps.demo.checks import LOOP_QUESTION, check_learning_loop

    log.begin(7, "learn", f"the FAQ bot declines {LOOP_QUESTION!r}; reviewing it into the KB")
    state.loop = check_learning_loop(state.url("qa"), state.admin_token)
    if state.loop.ok:
        log.done(state.loop.detail)
    else:
        log.done(f"WARNING: {state.loop.detail}")


def print_urls(state: DemoState, log: StageLog) -> None:
    log.begin(8, "ready", "URLs on stdout")
    hub, dashboard = state.url("hub"), state.url("dashboard")
    qa, recs = state.url("qa"), state.url("recs")
    rows = [
        ("hub", f"{hub}/", "every page linked"),
        ("store", f"{recs}/store", "recommendations + chat widget"),
        ("dashboard", f"{dashboard}/", f"analyst {DEMO_ANALYST}: {state.analyst_token}"),
        ("chat test", f"{qa}/demo", "the chat widget alone"),
        ("agent", f"{qa}/agent", f"sign in as {DEMO_AGENT}: {state.agent_token}"),
        ("review", f"{qa}/review", f"the learning loop; admin token: {state.admin_token}"),
        ("qa api", f"{qa}/api/chat", ""),
        ("recs api", f"{recs}/api/recommendations?user_id=...", ""),
    ]
    for name, url, what in rows:
        click.echo(f"{name:<10} {url}  ({what})" if what else f"{name:<10} {url}")
    click.echo("ready")


def run_checks(state: DemoState) -> bool:
    from threefold.apps.demo.checks import check_alerts, check_qa, check_recs
    from threefold.apps.qa.config import SAMPLE_KB

    results = [
        check_qa(state.url("qa"), SAMPLE_KB, origin=state.url("recs")),
        state.loop,
        check_recs(state.url("recs"), chat_url=state.url("qa")),
        check_alerts(
            state.alert,
            state.alerts_config.alerts_topic,
            state.url("dashboard"),
            problem=state.alert_problem,
        ),
    ]
    for result in results:
        click.echo(result.line())
    return all(r.ok for r in results)


def run_demo(options: DemoOptions) -> int:
    """Run every stage; then check (--check) or serve until interrupted. Returns the exit code."""
    from threefold.core.errors import ThreefoldError

    _quiet_logs()
    cache = options.cache_dir.expanduser().resolve()
    log = StageLog()
    state = DemoState(run_id=uuid.uuid4().hex[:8])
    stack = ExitStack()
    code = 0
    error: Exception | None = None
    try:
        with _stop_on_sigterm():
            start_services(options, stack, state, log)
            models = train_models(options, cache, log)
            apps = build_apps(options, cache, models, state, stack, log)
            start_apps(apps, state, stack, log)
            sent = replay_news(state, options.progress, log)
            await_alert(state, sent, options, log)
            learning_loop(state, log)
            print_urls(state, log)
            if options.check:
                code = 0 if run_checks(state) else 1
            else:
                log.note("Ctrl-C stops everything")
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt as exc:
        reason = "SIGTERM" if isinstance(exc, _Interrupted) else "Ctrl-C"
        click.echo(f"demo: {reason}: stopping", err=True)
        code = 1 if options.check else 0
    except Exception as exc:
        if not options.check:
            error = exc
        else:
            if not isinstance(exc, ThreefoldError):
                traceback.print_exc()
            click.echo(f"FAIL demo: {type(exc).__name__}: {exc}")
            code = 1
    finally:
        _close(stack)
    if isinstance(error, ThreefoldError):
        raise click.ClickException(str(error)) from error
    if error is not None:
        raise error
    return code


def _quiet_logs() -> None:
    """Unless debugging (-v), keep library and request logs out of the stage messages."""
    import logging

    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def _close(stack: ExitStack) -> None:
    started = time.monotonic()
    with _signals_ignored():
        stack.close()
    click.echo(f"demo: stopped everything ({time.monotonic() - started:.1f} s)", err=True)
