"""`threefold retrain qa` against a running QA API on the embedded Redis: gate, hot swap, rollback.

A small KB (the store FAQ's first 12 FAQs, retrieval only) keeps each rebuild to a few seconds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.cli import cli
from threefold.apps.qa.bot import Bot
from threefold.apps.qa.knowledge_base import KnowledgeBase

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N_FAQS = 12
GATE = [  # none of these is a KB question or answer
    ("how many business days until my stuff gets here", "shipping_time"),
    ("what's the delivery charge", "shipping_cost"),
    ("do you have overnight shipping", "express_shipping"),
    ("can you send orders to the UK", "international_shipping"),
    ("do I pay import tax", "customs_duties"),
    ("where's my parcel right now", "track_order"),
    ("I'd like to cancel what I ordered", "cancel_order"),
    ("tell me a joke about penguins", ""),
    ("what's the weather in Paris tomorrow", ""),
]


@pytest.fixture(scope="module")
def small_kb(store_kb: KnowledgeBase) -> KnowledgeBase:
    return KnowledgeBase(list(store_kb)[:N_FAQS])


@pytest.fixture(scope="module")
def small_bot(embedder, small_kb: KnowledgeBase) -> Bot:
    from threefold.apps.qa.builder import BuildOptions, build_bot

    return build_bot(small_kb, embedder, BuildOptions(intent_model=False))


@pytest.fixture
def bot_dir(tmp_path: Path, small_bot: Bot, publish_copy) -> Path:
    """Overrides the QA fixture: the apps of `make_app` serve the small bot from here."""
    root = tmp_path / "registry" / "faq-bot"
    publish_copy(small_bot, root)
    return root


def write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def gate_set(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "gate.csv", ("question", "faq_id"), GATE)


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def chat_version(client) -> str:
    reply = client.post("/api/chat", json={"message": "How do I track my order?"}).get_json()
    assert reply["outcome"] == "answer", reply
    return reply["bot_version"]


def test_retrain_promotes_the_running_api_follows_and_rollback_returns(
    make_app, bot_dir: Path, gate_set: Path
) -> None:
    client = make_app(follow_pointer_s=0).test_client()
    live = chat_version(client)
    report = run("retrain", "qa", "--bot-dir", str(bot_dir), "--gate-set", str(gate_set))
    assert report["app"] == "qa" and report["model"] == "faq-bot"
    assert report["current_version"] == live and report["promoted"] is True
    assert report["live_version"] == report["candidate_version"] != live
    assert report["gate"]["metric"] == "accuracy" and report["gate"]["margin"] == 0.0
    assert report["gate"]["candidate"] >= report["gate"]["current"] > 0.5
    assert report["evaluation"]["current"]["n"] == len(GATE)
    assert report["evaluation"]["current"]["bot_version"] == live
    assert report["evaluation"]["candidate"]["bot_version"] == report["candidate_version"]
    assert chat_version(client) == report["candidate_version"]  # no restart, no reload call

    listed = run("models", "list", "--registry", str(bot_dir.parent))
    (model,) = listed["models"]
    assert model["name"] == "faq-bot" and model["current"] == report["candidate_version"]
    shown = run("models", "show", "faq-bot", "--registry", str(bot_dir.parent))
    assert shown["created_by"] == "qa retrain" and shown["parent"] == live
    assert shown["gate"]["promoted"] is True and shown["data_fingerprint"]
    assert (
        run("models", "show", "faq-bot", live, "--registry", str(bot_dir.parent))["created_by"]
        == "qa build"
    )

    run("models", "rollback", "faq-bot", "--registry", str(bot_dir.parent))
    assert chat_version(client) == live


def test_a_worse_candidate_is_rejected_and_the_live_version_stays(
    make_app, bot_dir: Path, gate_set: Path, small_kb: KnowledgeBase, tmp_path: Path
) -> None:
    """A KB edit that breaks the gate (each FAQ's questions moved to the next FAQ's answer)."""
    client = make_app(follow_pointer_s=0).test_client()
    live = chat_version(client)
    entries = list(small_kb)
    rows = [
        (entry.id, question, entries[(n + 1) % len(entries)].answer)
        for n, entry in enumerate(entries)
        for question in entries[(n + 1) % len(entries)].questions
    ]
    broken = write_csv(tmp_path / "broken.csv", ("id", "question", "answer"), rows)
    report = run(
        "retrain", "qa", "--bot-dir", str(bot_dir), "--gate-set", str(gate_set),
        "--kb", str(broken), "--margin", "0.05",
    )  # fmt: skip
    assert report["promoted"] is False
    assert report["live_version"] == live == report["current_version"]
    assert report["gate"]["candidate"] < report["gate"]["current"] - 0.05
    assert "rejected, the live version stays" in report["gate"]["reason"]
    assert chat_version(client) == live
    shown = run("models", "show", "faq-bot", report["candidate_version"], "--registry",
                str(bot_dir.parent))  # fmt: skip
    assert shown["status"] == "rejected" and shown["gate"]["reason"] == report["gate"]["reason"]


def test_gate_questions_seen_in_the_kb_are_an_error(
    bot_dir: Path, tmp_path: Path, small_kb: KnowledgeBase, monkeypatch
) -> None:
    leaked = write_csv(
        tmp_path / "leaked.csv",
        ("question", "faq_id"),
        [*GATE, ("  how do I TRACK my order ", "track_order")],
    )
    result = CliRunner().invoke(
        cli, ["retrain", "qa", "--bot-dir", str(bot_dir), "--gate-set", str(leaked)]
    )
    assert result.exit_code == 1
    assert "1 gate question(s) appear verbatim in the training data" in result.output
    assert "Fix: remove them from the gate set" in result.output

    monkeypatch.delenv("THREEFOLD_QA_GATE_SET", raising=False)
    result = CliRunner().invoke(cli, ["retrain", "qa", "--bot-dir", str(bot_dir)])
    assert result.exit_code == 1 and "Fix: pass --gate-set FILE" in result.output

    both = ["retrain", "qa", "--bot-dir", str(bot_dir), "--registry", str(tmp_path)]
    result = CliRunner().invoke(cli, both)
    assert result.exit_code == 1 and "either --registry or --bot-dir" in result.output
    result = CliRunner().invoke(
        cli,
        ["retrain", "qa", "--registry", str(tmp_path / "none"), "--gate-set", str(leaked)],
    )
    assert result.exit_code == 1 and str(tmp_path / "none" / "qa-bot") in result.output
    result = CliRunner().invoke(  # the registry from the environment, as `models` reads it
        cli,
        ["retrain", "qa", "--gate-set", str(leaked)],
        env={"THREEFOLD_MODELS_DIR": str(tmp_path / "none")},
    )
    assert result.exit_code == 1 and str(tmp_path / "none" / "qa-bot") in result.output
    result = CliRunner().invoke(  # ... and an explicit --bot-dir wins over it
        cli,
        ["retrain", "qa", "--bot-dir", str(bot_dir), "--gate-set", str(leaked)],
        env={"THREEFOLD_MODELS_DIR": str(tmp_path / "none")},
    )
    assert result.exit_code == 1 and "appear verbatim in the training data" in result.output

    typo = write_csv(tmp_path / "typo.csv", ("question", "faq_id"), [("where's my box", "trak")])
    result = CliRunner().invoke(
        cli, ["retrain", "qa", "--bot-dir", str(bot_dir), "--gate-set", str(typo)]
    )
    assert result.exit_code == 1 and "FAQs of neither bot, e.g. ['trak']" in result.output
    assert [v for v in (bot_dir / "versions").iterdir() if not v.name.startswith(".")] == [
        next((bot_dir / "versions").iterdir())
    ]


def test_a_retrain_does_not_publish_over_an_edit_made_while_it_built(
    make_app, bot_dir: Path, gate_set: Path, admin_headers, monkeypatch
) -> None:
    """An admin edit published while the candidate was built and judged: publishing the
    candidate (built from the KB before the edit) would discard it."""
    from threefold.apps.qa import retrain as retrain_module

    app = make_app(follow_pointer_s=0)
    admin = admin_headers
    build_candidate = retrain_module.candidate_bot

    def edited_meanwhile(*args, **kwargs):
        candidate = build_candidate(*args, **kwargs)
        body = {"id": "gift_wrap", "question": "Do you gift wrap?", "answer": "Yes, for 3 EUR."}
        assert app.test_client().post("/api/kb", json=body, headers=admin).status_code == 201
        return candidate

    monkeypatch.setattr(retrain_module, "candidate_bot", edited_meanwhile)
    result = CliRunner().invoke(
        cli, ["retrain", "qa", "--bot-dir", str(bot_dir), "--gate-set", str(gate_set)]
    )
    assert result.exit_code == 1
    assert "the bot changed during the retrain" in result.output
    assert "Nothing published" in result.output
    kb = app.test_client().get("/api/kb", headers=admin).get_json()["entries"]
    assert "gift_wrap" in {entry["id"] for entry in kb}
