"""The server's background rebuild after a review edit is gated like `threefold retrain qa`, and
`qa eval` judges the gate set's file and a single version folder (a rejected candidate).

A small KB (the store FAQ's first 12 FAQs, retrieval only) keeps each rebuild to a few seconds;
the gate margin decides the outcome either way (-0.9 demands an impossible gain, 0.9 lets any
candidate pass), so the tests pin the wiring, not a model's luck.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.cli import cli
from threefold.apps.qa.bot import Bot
from threefold.apps.qa.bot_manager import RECALIBRATED_BY, BotManager
from threefold.apps.qa.config import SAMPLE_GATE_SET
from threefold.apps.qa.knowledge_base import KnowledgeBase, entry_from_mapping
from threefold.apps.qa.retrain import GateSet, read_gate_set
from threefold.apps.qa.store import BotStore

N_FAQS = 12
PET_POLICY = {
    "id": "pet_policy",
    "questions": ["Can I bring my dog into the store?", "Are pets allowed in your shops?"],
    "answer": "Dogs on a leash are welcome in all our stores.",
}


@pytest.fixture(scope="module")
def small_bot(embedder, store_kb: KnowledgeBase) -> Bot:
    from threefold.apps.qa.builder import BuildOptions, build_bot

    return build_bot(
        KnowledgeBase(list(store_kb)[:N_FAQS]), embedder, BuildOptions(intent_model=False)
    )


@pytest.fixture
def small_gate_set(tmp_path: Path, small_bot: Bot) -> Path:
    """The shipped gate set's rows about the small KB's FAQs, plus its out-of-scope ones."""
    rows = [q for q in read_gate_set(SAMPLE_GATE_SET) if q.expected_id in (None, *small_bot.kb.ids)]
    path = tmp_path / "gate.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("question", "faq_id"))
        writer.writerows((q.query, q.expected_id or "") for q in rows)
    return path


def review_edit(store: BotStore, gate: GateSet, embedder) -> tuple[BotManager, str, list[str]]:
    """A manager with `gate` after a review-queue edit (it refits calibration in the background)
    and that rebuild; returns (manager, the edit's version, the rebuilds' outcomes)."""
    manager = BotManager(store, embedder=embedder, gate=gate)
    outcomes: list[str] = []
    manager.on_rebuild.append(outcomes.append)
    manager.reload()
    edited, _ = manager.edit(
        [entry_from_mapping(PET_POLICY)], by="admin (review)", recalibrate=True
    )
    assert manager.wait_for_retrain(timeout=300), "the background rebuild did not end"
    manager.close()
    return manager, edited, outcomes


def test_a_rebuild_the_gate_rejects_never_goes_live_and_is_counted(
    small_bot: Bot, small_gate_set: Path, tmp_path: Path, publish_copy, embedder
) -> None:
    store = publish_copy(small_bot, tmp_path / "bot")
    gate = GateSet.read(small_gate_set, margin=-0.9)
    manager, edited, outcomes = review_edit(store, gate, embedder)

    assert outcomes == ["rejected"]
    assert store.current_version() == edited == manager.bot.version  # the edit keeps answering
    rebuild = manager.last_rebuild
    assert rebuild is not None and rebuild["outcome"] == "rejected"
    assert rebuild["rebuilt_from"] == edited and rebuild["gate"]["promoted"] is False
    candidate = rebuild["version"]
    shown = store.entry.info(candidate)
    assert shown["status"] == "rejected" and shown["created_by"] == RECALIBRATED_BY
    assert "rejected, the live version stays" in shown["gate"]["reason"]
    assert shown["gate_set"]["n"] == len(gate.queries)

    # an operator judges the rejected candidate in place, on the gate set's own file
    result = CliRunner().invoke(
        cli,
        [
            "qa",
            "eval",
            "--bot",
            str(store.version_dir(candidate)),
            "--queries",
            str(small_gate_set),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["bot_version"] == candidate and report["n"] == len(gate.queries)
    assert report["overall_accuracy"] == pytest.approx(shown["gate"]["candidate"], abs=1e-4)


def test_a_rebuild_the_gate_accepts_goes_live(
    small_bot: Bot, small_gate_set: Path, tmp_path: Path, publish_copy, embedder
) -> None:
    store = publish_copy(small_bot, tmp_path / "bot")
    manager, edited, outcomes = review_edit(
        store, GateSet.read(small_gate_set, margin=0.9), embedder
    )

    assert outcomes == ["promoted"]
    rebuilt = store.current_version()
    assert rebuilt != edited and manager.bot.version == rebuilt
    assert manager.last_rebuild is not None and manager.last_rebuild["version"] == rebuilt
    shown = store.entry.info(rebuilt)
    assert shown["status"] == "current" and shown["gate"]["promoted"] is True
    assert shown["rebuilt_from"] == edited and "pet_policy" in manager.bot.kb


def eval_json(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["qa", "eval", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_qa_eval_reads_the_gate_set_and_a_version_folder(bot_dir: Path, tmp_path: Path) -> None:
    store = BotStore(bot_dir)
    version = store.current_version()
    assert version is not None
    whole = eval_json("--bot", str(bot_dir), "--queries", str(SAMPLE_GATE_SET))
    assert whole["n"] == 50 and whole["n_out_of_scope"] == 6 and whole["bot_version"] == version
    folder = eval_json("--bot", str(store.version_dir(version)), "--queries", str(SAMPLE_GATE_SET))
    assert folder["bot_version"] == version
    assert folder["overall_accuracy"] == whole["overall_accuracy"]

    copied = shutil.copytree(store.version_dir(version), tmp_path / "loose" / version)
    result = CliRunner().invoke(
        cli, ["qa", "eval", "--bot", str(copied), "--queries", str(SAMPLE_GATE_SET)]
    )
    assert result.exit_code == 1
    assert "is not in a bot directory's versions/ folder" in result.output


def test_the_server_gates_its_rebuilds_with_the_configured_gate_set(make_app) -> None:
    """THREEFOLD_QA_GATE_SET reaches the serving bot's manager, and /metrics counts the
    outcome (the manager alone was gated; the server built it without the gate)."""
    from threefold.apps.qa.resources import EXTENSION_KEY

    app = make_app(gate_set=str(SAMPLE_GATE_SET), gate_margin=-0.9)
    manager = app.extensions[EXTENSION_KEY].manager
    edited, _ = manager.edit(
        [entry_from_mapping(PET_POLICY)], by="admin (review)", recalibrate=True
    )
    assert manager.wait_for_retrain(timeout=600), "the background rebuild did not end"
    assert manager.bot.version == edited  # rejected: the edit keeps answering
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'qa_bot_rebuilds_total{outcome="rejected"} 1.0' in metrics
