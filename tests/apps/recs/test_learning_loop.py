"""The recs learning loop end to end on a real redis-server: build into the registry, serve it,
log impressions and clicks, `threefold retrain recs`, gate, hot swap, reject, roll back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.cli import cli
from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.resources import open_resources
from threefold.apps.recs.retrain import RANKER_ENTRY
from threefold.apps.recs.web import create_app
from threefold.core.registry import ModelEntry
from threefold.streaming.connections import RedisSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FAST = ["--no-fine-tune", "--no-sequence"]  # base encoder + tuned combiner: seconds, not minutes
USERS = ("new-1", "new-2")


def run(args: list[str], env: dict[str, str] | None = None) -> dict:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def wait_for_version(client, version: str, timeout_s: float = 60.0) -> dict:
    """The first list ranked by `version` (the API swaps by itself; nothing restarts)."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get("/api/recommendations?user_id=u001&k=5").json
        if body["model_version"] == version or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_new_clicks_retrain_gate_hot_swap_reject_and_roll_back(
    tmp_path: Path, redis_url: str, redis_prefix: str, base_model_path: str
) -> None:
    root = tmp_path / "models"
    env = {
        "REDIS_URL": redis_url,
        "THREEFOLD_RECS_REDIS_PREFIX": redis_prefix,
        "THREEFOLD_BASE_MODEL": base_model_path,
    }
    built = run(["recs", "build", "--registry", str(root), *FAST], env)
    assert built["version"] == "v1"
    entry = ModelEntry(root / RANKER_ENTRY)
    assert entry.info("v1")["data_fingerprint"] and entry.info("v1")["status"] == "current"

    settings = RecsConfig(
        model_dir=entry.path,
        redis_prefix=redis_prefix,
        model_check_seconds=0.2,
        rate_limit_per_minute=None,
        spool_dir=tmp_path / "spool",
    )
    resources = open_resources(settings, RedisSettings(url=redis_url))
    client = create_app(settings, resources).test_client()
    other = open_resources(settings, RedisSettings(url=redis_url))  # a second worker
    other_client = create_app(settings, other).test_client()
    try:
        # every list names its ranker version and is logged as an impression
        clicks = []
        for user in USERS:
            body = client.get(f"/api/recommendations?user_id={user}&k=10").json
            assert body["model_version"] == "v1" and body["list_id"]
            shown = [item["item_id"] for item in body["items"]]
            unseen = next(i for i in ("kt-003", "od-001", "bt-001", "el-001") if i not in shown)
            clicks += [
                {"user_id": user, "item_id": item, "event": "click", "list_id": body["list_id"]}
                for item in (shown[0], shown[2], unseen)  # the last was not in that list
            ]
        assert client.post("/api/events", json={"events": clicks}).status_code == 202
        ctr = client.get("/api/impressions/ctr").json
        assert ctr["model_version"] == "v1"
        assert ctr["versions"]["v1"] == {
            "lists": 2, "shown": 20, "click": 4, "purchase": 0, "ctr": 0.2, "purchase_rate": 0.0
        }  # fmt: skip

        # new clicks -> retrain -> gate -> promoted -> the running API serves v2
        promoted = run(["retrain", "recs", "--registry", str(root), "--margin", "1", *FAST], env)
        assert promoted["training_events"]["new"] == len(clicks)  # read back from Redis
        assert promoted["candidate_version"] == "v2" and promoted["promoted"] is True
        assert promoted["gate"]["metric"] == "ndcg@10" and promoted["gate"]["current"] is not None
        assert promoted["live_version"] == "v2" and promoted["current_version"] == "v1"
        info = entry.info("v2")
        assert info["parent"] == "v1" and info["gate"]["promoted"] is True
        assert info["data_fingerprint"] != entry.info("v1")["data_fingerprint"]
        body = wait_for_version(client, "v2")
        assert body["model_version"] == "v2" and body["cached"] is False
        assert client.get("/healthz").json["model_version"] == "v2"
        assert "recs_model_swaps_total 1.0" in client.get("/metrics").text
        assert wait_for_version(other_client, "v2")["model_version"] == "v2"  # every worker

        # a candidate worse than the live one on the gate set is rejected; v2 stays live
        rejected = run(["retrain", "recs", "--registry", str(root), "--margin", "-1", *FAST], env)
        assert rejected["promoted"] is False and rejected["candidate_version"] == "v3"
        assert rejected["live_version"] == "v2" and "rejected" in rejected["gate"]["reason"]
        assert entry.info("v3")["status"] == "rejected"
        time.sleep(1.0)  # five pointer checks later the API still serves v2
        assert client.get("/api/recommendations?user_id=u001&k=5").json["model_version"] == "v2"

        # rollback is one command and reaches the running API the same way
        run(["models", "rollback", RANKER_ENTRY, "--registry", str(root)])
        assert wait_for_version(client, "v1")["model_version"] == "v1"
        assert wait_for_version(other_client, "v1")["model_version"] == "v1"
    finally:
        resources.live.stop()
        other.live.stop()
