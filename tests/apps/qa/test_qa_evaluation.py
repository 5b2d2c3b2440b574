"""The evaluation contract: metric definitions and the `threefold qa build/eval` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.cli import qa
from threefold.apps.qa.config import SAMPLE_KB, SAMPLE_QUERIES
from threefold.apps.qa.evaluation import LabeledQuery, evaluate, read_queries
from threefold.core.errors import DataError

CONTRACT_KEYS = {
    "n",
    "in_scope_accuracy",
    "recall_at_5",
    "mrr",
    "oos_precision",
    "oos_recall",
    "overall_accuracy",
    "latency_ms",
}
QUERIES = [
    LabeledQuery("Is shipping free?", "shipping_cost"),
    LabeledQuery("How do I reset my password?", "password_reset"),
    LabeledQuery("What is the capital of Peru?", None),
]


def test_sample_queries_score_well_on_the_sample_kb(store_bot: Bot) -> None:
    queries = read_queries(SAMPLE_QUERIES)
    result = evaluate(store_bot, queries)
    assert set(result) >= CONTRACT_KEYS
    assert result["n"] == len(queries) == result["n_in_scope"] + result["n_out_of_scope"]
    assert result["in_scope_accuracy"] >= 0.7
    assert result["recall_at_5"] >= 0.9
    assert result["recall_at_5"] >= result["in_scope_accuracy"]
    assert result["oos_recall"] >= 0.75
    assert result["latency_ms"]["p95"] >= result["latency_ms"]["p50"] > 0


def test_answering_everything_detects_no_out_of_scope_query(store_bot: Bot) -> None:
    result = evaluate(
        store_bot, QUERIES, settings=store_bot.policy_settings(threshold=0.0, ambiguity_margin=0.0)
    )
    assert result["in_scope_accuracy"] == 1.0
    assert result["oos_recall"] == 0.0
    assert result["oos_precision"] is None  # nothing abstained
    assert result["overall_accuracy"] == round(2 / 3, 4)
    assert result["mrr"] == 1.0


def test_abstaining_always_counts_in_scope_queries_as_wrong(store_bot: Bot) -> None:
    result = evaluate(store_bot, QUERIES, settings=store_bot.policy_settings(threshold=1.0))
    assert result["in_scope_accuracy"] == 0.0
    assert result["recall_at_5"] == 1.0  # the ranking is scored regardless of abstention
    assert result["oos_recall"] == 1.0
    assert result["oos_precision"] == round(1 / 3, 4)
    assert result["overall_accuracy"] == round(1 / 3, 4)


def test_expected_ids_missing_from_the_kb_are_reported(store_bot: Bot) -> None:
    with pytest.raises(DataError, match=r"1 expected_id value\(s\) are not FAQ ids.*'nope'"):
        evaluate(store_bot, [LabeledQuery("hello", "nope")])


def test_query_file_needs_both_columns(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("query,label\nhi,a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"missing column\(s\) \['expected_id'\]"):
        read_queries(path)


@pytest.mark.slow
def test_build_then_eval_commands_print_the_contract_json(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "bot"
    built = runner.invoke(qa, ["build", "--kb", str(SAMPLE_KB), "--out", str(out)])
    assert built.exit_code == 0, built.output
    summary = json.loads(built.stdout)
    assert summary["faqs"] == 44 and summary["calibration"]["source"] == "held-out"
    evaluated = runner.invoke(qa, ["eval", "--bot", str(out), "--queries", str(SAMPLE_QUERIES)])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(evaluated.stdout)
    assert set(result) >= CONTRACT_KEYS
    assert result["bot_version"] == summary["version"]
    asked = runner.invoke(qa, ["ask", "--bot", str(out), "is", "shipping", "free?"])
    assert json.loads(asked.stdout)["faq_id"] == "shipping_cost"


def test_build_command_reports_a_bad_kb_without_a_traceback(tmp_path: Path) -> None:
    kb = tmp_path / "kb.csv"
    kb.write_text("id,question\na,Hi?\n", encoding="utf-8")
    result = CliRunner().invoke(qa, ["build", "--kb", str(kb), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert "missing column 'answer'" in result.output
    assert "Traceback" not in result.output


def test_lower_oos_weight_lowers_the_build_time_threshold(tmp_path: Path) -> None:
    runner = CliRunner()
    thresholds = {}
    for weight in ("1", "0.1"):
        out = tmp_path / f"bot-{weight}"
        args = ["build", "--kb", str(SAMPLE_KB), "--out", str(out), "--oos-weight", weight]
        built = runner.invoke(qa, args)
        assert built.exit_code == 0, built.output
        thresholds[weight] = json.loads(built.stdout)["calibration"]["threshold"]
    assert thresholds["0.1"] < thresholds["1"]


def test_eval_counts_outcomes_and_writes_per_query_details(
    store_intent_bot: Bot, publish_copy, tmp_path: Path
) -> None:
    publish_copy(store_intent_bot, tmp_path / "bot")
    queries = tmp_path / "q.csv"
    queries.write_text(
        "query,expected_id\nis shipping free?,shipping_cost\nthanks!,\n"
        "who won the world cup in 2018,\n",
        encoding="utf-8",
    )
    details = tmp_path / "details.jsonl"
    evaluated = CliRunner().invoke(
        qa,
        ["eval", "--bot", str(tmp_path / "bot"), "--queries", str(queries), "--details",
         str(details)],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(evaluated.stdout)
    assert set(result) >= CONTRACT_KEYS
    assert result["outcomes"]["answer"] == 1 and result["outcomes"]["small_talk"] == 1
    assert sum(result["outcomes"].values()) == 3
    lines = [json.loads(line) for line in details.read_text(encoding="utf-8").splitlines()]
    assert [line["query"] for line in lines] == [
        "is shipping free?",
        "thanks!",
        "who won the world cup in 2018",
    ]
    assert lines[0]["faq_id"] == "shipping_cost" and lines[0]["correct"] is True
    assert lines[1]["outcome"] == "small_talk" and lines[2]["outcome"] != "answer"
    assert {"reason", "top_ids", "confidence", "latency_ms"} <= set(lines[0])


def test_eval_refuses_a_details_path_it_cannot_write_before_evaluating(
    store_intent_bot: Bot, publish_copy, tmp_path: Path
) -> None:
    publish_copy(store_intent_bot, tmp_path / "bot")
    queries = tmp_path / "q.csv"
    queries.write_text("query,expected_id\nis shipping free?,shipping_cost\n", encoding="utf-8")
    details = tmp_path / "no-such-folder" / "details.jsonl"
    args = ["eval", "--bot", str(tmp_path / "bot"), "--queries", str(queries)]
    evaluated = CliRunner().invoke(qa, [*args, "--details", str(details)])
    assert evaluated.exit_code == 1
    assert "Traceback" not in evaluated.output and evaluated.exception.__class__ is SystemExit
    assert "--details" in evaluated.output and "no-such-folder" in evaluated.output
