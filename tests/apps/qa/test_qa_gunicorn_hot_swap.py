"""Two gunicorn workers (deploy/gunicorn.conf.py) follow a promotion and a rollback, no restart."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.cli import cli
from threefold.apps.qa.store import BotStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REQUESTS = 24  # each on a new connection: a worker left behind shows up with odds 1 - 2**-24


@pytest.fixture
def served(gunicorn_qa) -> str:
    base, _ = gunicorn_qa(WEB_CONCURRENCY="2", GUNICORN_THREADS="2")
    return base


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
