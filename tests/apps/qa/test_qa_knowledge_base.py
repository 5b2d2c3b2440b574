"""Loading and validating FAQ knowledge bases (CSV paraphrase rows, JSON, JSONL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from threefold.apps.qa.knowledge_base import KnowledgeBase, entry_from_mapping
from threefold.core.errors import DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_sharing_an_id_become_paraphrases(tmp_path: Path) -> None:
    kb = KnowledgeBase.load(
        write(
            tmp_path / "kb.csv",
            "id,question,answer,category,owner\n"
            "ship,How long is shipping?,3-5 days.,Shipping,ops\n"
            "ship,When will it arrive?,,,\n"
            "ship,When will it arrive?,3-5 days.,,\n"
            "pay,Do you take PayPal?,Yes.,Payment,\n",
        )
    )
    assert kb.ids == ["ship", "pay"]
    assert kb["ship"].questions == ("How long is shipping?", "When will it arrive?")
    assert kb["ship"].answer == "3-5 days."
    assert kb["ship"].category == "Shipping"
    assert kb["ship"].metadata == {"owner": "ops"}
    assert kb.n_questions == 3


def test_json_and_jsonl_accept_question_lists(tmp_path: Path) -> None:
    entries = [
        {"id": 7, "questions": ["Is it free?", "Any fees?"], "answer": "Free.", "category": "x"},
        {"id": "b", "question": "Hours?", "answer": "9-5."},
    ]
    from_json = KnowledgeBase.load(write(tmp_path / "kb.json", json.dumps(entries)))
    from_jsonl = KnowledgeBase.load(
        write(tmp_path / "kb.jsonl", "\n".join(json.dumps(e) for e in entries))
    )
    for kb in (from_json, from_jsonl):
        assert kb.ids == ["7", "b"]
        assert kb["7"].questions == ("Is it free?", "Any fees?")


def test_saved_kb_loads_back_identical(tmp_path: Path, store_kb: KnowledgeBase) -> None:
    store_kb.save(tmp_path / "kb.json")
    again = KnowledgeBase.load(tmp_path / "kb.json")
    assert again.to_json() == store_kb.to_json()


def test_conflicting_answers_for_one_id_name_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "kb.csv",
        "id,question,answer\na,Q1?,Answer one.\nb,Q2?,B.\na,Q3?,Answer two.\n",
    )
    with pytest.raises(DataError, match=r"line 4.*column answer.*already has a different answer"):
        KnowledgeBase.load(path)


def test_empty_question_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "kb.csv", "id,question,answer\na,Q1?,A.\na,  ,A.\n")
    with pytest.raises(DataError, match=r"kb.csv, line 3, column question: expected non-empty"):
        KnowledgeBase.load(path)


def test_missing_answer_column_says_what_was_found(tmp_path: Path) -> None:
    path = write(tmp_path / "kb.csv", "id,question,reply\na,Q?,A.\n")
    with pytest.raises(DataError, match=r"missing column 'answer'; found \['id', 'question'"):
        KnowledgeBase.load(path)


def test_id_without_any_answer_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "kb.csv", "id,question,answer\na,Q?,\n")
    with pytest.raises(DataError, match="FAQ id 'a' has no answer"):
        KnowledgeBase.load(path)


def test_ids_with_separator_characters_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "kb.csv", "id,question,answer\na#1,Q?,A.\n")
    with pytest.raises(DataError, match=r"line 2, column id: id 'a#1' must be"):
        KnowledgeBase.load(path)


def test_entry_from_mapping_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match=r"questions\[1\] must be non-empty text"):
        entry_from_mapping({"id": "a", "questions": ["ok?", ""], "answer": "A"})
    with pytest.raises(ValueError, match="'answer' must be non-empty text"):
        entry_from_mapping({"id": "a", "question": "ok?"})
    entry = entry_from_mapping({"id": " a ", "question": " ok? ", "answer": " A "})
    assert (entry.id, entry.questions, entry.answer) == ("a", ("ok?",), "A")


def test_with_changes_returns_a_new_kb(store_kb: KnowledgeBase) -> None:
    extra = entry_from_mapping({"id": "new", "question": "New?", "answer": "Yes."})
    changed = store_kb.with_changes(upserts=[extra], deletes=["po_box"])
    assert "new" in changed and "po_box" not in changed
    assert "po_box" in store_kb and "new" not in store_kb
