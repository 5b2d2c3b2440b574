"""Two gunicorn workers (deploy/gunicorn.conf.py) follow a promotion and a rollback, no restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.servers import free_port, wait_until_serving

from threefold.apps.cli import cli
from threefold.apps.qa.store import BotStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
REQUESTS = 24  # each on a new connection: a worker left behind shows up with odds 1 - 2**-24


@pytest.fixture
def served(bot_dir: Path, redis_url: str, redis_prefix: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        "GUNICORN_ACCESS_LOG": "0",
        "REDIS_URL": redis_url,
        "THREEFOLD_QA_BOT_DIR": str(bot_dir),
        "THREEFOLD_QA_REDIS_PREFIX": redis_prefix,
        "THREEFOLD_QA_FOLLOW_POINTER_S": "0",
        "THREEFOLD_QA_RATE_LIMIT_PER_MINUTE": "0",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
         "threefold.apps.qa.web:create_app()"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(process, f"{base}/healthz", timeout_s=180, poll_s=0.5)
    yield base
    process.terminate()
    process.wait(timeout=60)


def served_versions(base: str) -> set[str]:
    """The bot versions named by REQUESTS chat replies, each on a new connection."""
    versions = set()
    for _ in range(REQUESTS):
        request = urllib.request.Request(
            f"{base}/api/chat",
            data=json.dumps({"message": "Is shipping free?"}).encode(),
            headers={"Content-Type": "application/json", "Connection": "close"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            versions.add(json.loads(response.read())["bot_version"])
    return versions


def test_every_worker_follows_a_promotion_and_a_rollback(served: str, bot_dir: Path) -> None:
    store = BotStore(bot_dir)
    original = store.current_version()
    assert served_versions(served) == {original}
    promoted = store.entry.publish_dir(store.version_dir(original))  # e.g. `threefold retrain qa`
    assert served_versions(served) == {promoted}
    result = CliRunner().invoke(
        cli, ["models", "rollback", bot_dir.name, "--registry", str(bot_dir.parent)]
    )
    assert result.exit_code == 0, result.output
    assert served_versions(served) == {original}
