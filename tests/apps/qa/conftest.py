"""Fixtures of the QA bot tests: the shipped store FAQ built once, per-test bot dirs and apps."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support.servers import start_gunicorn

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.config import SAMPLE_KB, QAConfig
from threefold.apps.qa.knowledge_base import KnowledgeBase
from threefold.apps.qa.store import BotStore

ADMIN_TOKEN = "test-admin-token"


def publish_copy(bot: Bot, root: Path) -> BotStore:
    """Publish a copy of `bot` (own BotInfo, shared read-only index) as a new bot directory."""
    clone = Bot(
        kb=bot.kb,
        index=bot.index,
        embedder=bot.embedder,
        calibrator=bot.calibrator,
        info=replace(bot.info),
        intent=bot.intent,
        fusion=bot.fusion,
    )
    store = BotStore(root)
    store.publish(clone)
    return store


@pytest.fixture(name="publish_copy")
def publish_copy_fixture() -> Callable[[Bot, Path], BotStore]:
    """The `publish_copy(bot, root)` helper as a fixture."""
    return publish_copy


@pytest.fixture
def admin_headers() -> dict[str, str]:
    """Authorization header with the admin token the `make_app` apps use."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="session")
def store_kb() -> KnowledgeBase:
    return KnowledgeBase.load(SAMPLE_KB)


@pytest.fixture(scope="session")
def store_bot(embedder, store_kb: KnowledgeBase) -> Bot:
    """The shipped sample store FAQ, retrieval only, built once per test run (never mutate it)."""
    from threefold.apps.qa.builder import BuildOptions, build_bot

    return build_bot(store_kb, embedder, BuildOptions(intent_model=False))


@pytest.fixture(scope="session")
def store_intent_bot(embedder, store_kb: KnowledgeBase) -> Bot:
    """The store FAQ with an intent model (the default build), once per run (never mutate it)."""
    from threefold.apps.qa.builder import build_bot

    return build_bot(store_kb, embedder)


@pytest.fixture
def bot_dir(tmp_path: Path, store_bot: Bot) -> Path:
    """A bot directory of this test holding one version of the store bot."""
    root = tmp_path / "bot"
    publish_copy(store_bot, root)
    return root


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    """The record spool of this test's apps and servers (the workers of one host share it)."""
    return tmp_path / "qa-spool"


@pytest.fixture
def make_app(
    bot_dir: Path, redis_url: str, redis_prefix: str, spool_dir: Path, embedder
) -> Iterator[Callable[..., object]]:
    """`make_app(**settings_overrides)` -> a Flask app on this test's bot dir, Redis prefix and
    record spool.

    `redis_url=None` gives the app no Redis (the degraded, in-memory mode); `encoder` replaces
    the shared test encoder. At teardown it closes the apps (their background rebuilds stop,
    their record flush ends), so none outlives its test.
    """
    opened = []
    from threefold.apps.qa.resources import open_resources
    from threefold.apps.qa.web import create_app
    from threefold.streaming.connections import RedisSettings

    def make(
        *, redis_url: str | None = redis_url, encoder: object = None, **overrides: object
    ) -> object:
        values: dict[str, object] = {
            "bot_dir": str(bot_dir),
            "kb_path": None,
            "redis_prefix": redis_prefix,
            "spool_dir": spool_dir,
            "admin_token": ADMIN_TOKEN,
            "rate_limit_per_minute": None,
        }
        values.update(overrides)
        settings = QAConfig(**values)  # type: ignore[arg-type]
        resources = open_resources(
            settings, RedisSettings(url=redis_url), encoder=encoder or embedder
        )
        opened.append(resources)
        return create_app(settings, resources)

    yield make
    for resources in opened:
        resources.close()
        assert resources.manager.wait_for_retrain(timeout=600), (
            "a background bot rebuild never finished"
        )


@pytest.fixture
def gunicorn_qa(
    bot_dir: Path, redis_url: str, redis_prefix: str, spool_dir: Path
) -> Iterator[Callable[..., tuple[str, subprocess.Popen]]]:
    """`gunicorn_qa(**env)` -> (base URL, process): `gunicorn -c deploy/gunicorn.conf.py
    'threefold.apps.qa.web:create_app()'` on this test's bot dir, Redis, prefix and spool, once it
    answers. `env` overrides the environment (e.g. REDIS_URL, WEB_CONCURRENCY); stderr is a
    pipe. Killed at teardown if still running."""
    started: list[subprocess.Popen] = []

    def start(**env: str) -> tuple[str, subprocess.Popen]:
        environment = {
            **os.environ,
            "GUNICORN_ACCESS_LOG": "0",
            "REDIS_URL": redis_url,
            "THREEFOLD_QA_BOT_DIR": str(bot_dir),
            "THREEFOLD_QA_REDIS_PREFIX": redis_prefix,
            "THREEFOLD_QA_SPOOL_DIR": str(spool_dir),
            "THREEFOLD_QA_FOLLOW_POINTER_S": "0",
            "THREEFOLD_QA_RATE_LIMIT_PER_MINUTE": "0",
            **env,
        }
        process, port = start_gunicorn(
            "threefold.apps.qa.web:create_app()", environment, ready_path="/healthz", timeout_s=180
        )
        started.append(process)
        return f"http://127.0.0.1:{port}", process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
