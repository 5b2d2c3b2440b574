"""Gate sets of `threefold retrain qa`: read, and refused when a build has seen their questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from threefold.apps.qa.config import SAMPLE_GATE_SET
from threefold.apps.qa.retrain import check_ids, check_unseen, read_gate_set, training_texts
from threefold.core.errors import DataError


def test_the_shipped_gate_set_is_unseen_by_the_sample_bot(store_bot) -> None:
    queries = read_gate_set(SAMPLE_GATE_SET)
    assert len(queries) == 50 and sum(q.expected_id is None for q in queries) == 6
    check_unseen(queries, training_texts(store_bot))
    check_ids(queries, store_bot.kb)


def test_gate_set_errors_say_what_to_fix(tmp_path: Path, store_bot) -> None:
    store_kb = store_bot.kb
    wrong_columns = tmp_path / "eval.csv"
    wrong_columns.write_text("query,expected_id\nis shipping free,shipping_cost\n")
    with pytest.raises(DataError, match="faq_id"):
        read_gate_set(wrong_columns)
    leaked = read_gate_set(_csv(tmp_path, "Is shipping FREE", "shipping_cost"))
    with pytest.raises(DataError, match=r"appear verbatim in the training data.*Fix: remove"):
        check_unseen(leaked, training_texts(store_bot))
    probe = read_gate_set(_csv(tmp_path, "Tell me a joke!", ""))  # a built-in calibration probe
    with pytest.raises(DataError, match="1 gate question"):
        check_unseen(probe, training_texts(store_bot))
    typo = read_gate_set(_csv(tmp_path, "free delivery?", "shiping_cost"))
    with pytest.raises(DataError, match=r"neither bot, e.g. \['shiping_cost'\]"):
        check_ids(typo, store_kb)


def _csv(folder: Path, question: str, faq_id: str) -> Path:
    path = folder / "gate.csv"
    path.write_text(f"question,faq_id\n{question},{faq_id}\n", encoding="utf-8")
    return path
