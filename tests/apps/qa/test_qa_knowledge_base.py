"""Loading and validating FAQ knowledge bases (CSV paraphrase rows, JSON, JSONL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from threefold.apps.qa.knowledge_base import (
    MAX_ANSWER_CHARS,
    MAX_QUESTION_CHARS,
    FaqEntry,
    InvalidEntry,
    KnowledgeBase,
    entry_from_mapping,
)
from threefold.core.errors import DataError

SHARED_FAQ = Path(__file__).resolve().parents[4] / "shared" / "data" / "faq"


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
    for again in (
        KnowledgeBase.load_saved(tmp_path / "kb.json"),
        KnowledgeBase.load(tmp_path / "kb.json"),
    ):
        assert again.to_json() == store_kb.to_json()


def test_a_saved_kb_loads_back_as_written_even_where_the_contract_changed(
    tmp_path: Path,
) -> None:
    """A bot version's kb.json: its index names the ids as saved, so nothing is normalized."""
    legacy = FaqEntry(id="cafe\u0301", questions=("Q?",), answer="a" * (MAX_ANSWER_CHARS + 1))
    KnowledgeBase([legacy]).save(tmp_path / "kb.json")
    assert KnowledgeBase.load_saved(tmp_path / "kb.json")["cafe\u0301"] == legacy
    with pytest.raises(DataError, match="has 20,001 characters"):
        KnowledgeBase.load(tmp_path / "kb.json")
    (tmp_path / "broken.json").write_text('[{"id": "a"}]', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json.*not a knowledge base saved by threefold"):
        KnowledgeBase.load_saved(tmp_path / "broken.json")


def test_conflicting_answers_for_one_id_name_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "kb.csv",
        "id,question,answer\na,Q1?,Answer one.\nb,Q2?,B.\na,Q3?,Answer two.\n",
    )
    with pytest.raises(DataError, match=r"line 4.*column answer.*already has a different answer"):
        KnowledgeBase.load(path)


def test_empty_question_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "kb.csv", "id,question,answer\na,Q1?,A.\na,  ,A.\n")
    with pytest.raises(
        DataError,
        match=r"kb.csv, line 3, column question: the question of FAQ 'a' must be non-empty",
    ):
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
    with pytest.raises(DataError, match=r"line 2, column id: id 'a#1' holds '#' at position 1"):
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


@pytest.mark.parametrize(
    ("faq_id", "found"),
    [
        ("zw\u200bid", "U+200B ZERO WIDTH SPACE (an invisible format character) at position 2"),
        ("\u202eevil", "U+202E RIGHT-TO-LEFT OVERRIDE (an invisible format character)"),
        ("\ufeffbom", "U+FEFF ZERO WIDTH NO-BREAK SPACE (an invisible format character)"),
        ("nul\x00id", "U+0000 (a control character)"),
        ("tab\tid", "U+0009 (a control character)"),
        ("nb\u00a0sp", "U+00A0 NO-BREAK SPACE (a space other than U+0020)"),
        ("line\u2028sep", "U+2028 LINE SEPARATOR (a line separator)"),
        ("a#1", "'#'"),
        ("\u3164", "U+3164 HANGUL FILLER (a blank filler)"),
        ("\u0301\u0301", "holds nothing visible"),
    ],
)
def test_ids_with_invisible_or_control_characters_are_refused(faq_id: str, found: str) -> None:
    with pytest.raises(InvalidEntry, match=r"holds .*; an id is 1 to 128 letters") as raised:
        entry_from_mapping({"id": faq_id, "question": "Q?", "answer": "A."})
    assert found in str(raised.value) and raised.value.field == "id"


def test_ids_are_nfc_normalized_so_composed_and_decomposed_twins_are_one() -> None:
    composed = entry_from_mapping({"id": "caf\u00e9", "question": "Q?", "answer": "A."})
    decomposed = entry_from_mapping({"id": "cafe\u0301", "question": "Q?", "answer": "A."})
    assert composed.id == decomposed.id == "caf\u00e9"
    with pytest.raises(ValueError, match="duplicate FAQ id 'caf\u00e9'"):
        KnowledgeBase([composed, decomposed])
    assert entry_from_mapping({"id": "size guide", "question": "Q?", "answer": "A."}).id


@pytest.mark.parametrize("faq_id", [5, 5.0, True, None, ["a"]])
def test_an_id_that_is_not_text_is_a_type_error(faq_id: object) -> None:
    with pytest.raises(InvalidEntry, match=r"'id' must be text \(a JSON string\), found"):
        entry_from_mapping({"id": faq_id, "question": "Q?", "answer": "A."})


def test_a_number_id_says_to_send_it_quoted() -> None:
    with pytest.raises(InvalidEntry, match='found int 5; send it quoted: "5"'):
        entry_from_mapping({"id": 5, "question": "Q?", "answer": "A."})


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        (
            {"question": "\x00"},
            "questions",
            r"questions\[0\] must be non-empty text with a visible",
        ),
        ({"question": "\u200b \u200d"}, "questions", r"questions\[0\] must be non-empty text"),
        ({"answer": "\u00a0"}, "answer", "'answer' must be non-empty text with a visible"),
        ({"answer": "\u3164\u2800"}, "answer", "'answer' must be non-empty text with a visible"),
        (
            {"question": "Why\x00?"},
            "questions",
            "holds U\\+0000 \\(a control character\\) at position 3",
        ),
        (
            {"question": "q" * (MAX_QUESTION_CHARS + 1)},
            "questions",
            r"questions\[0\] has 1,001 characters; at most 1,000 are allowed",
        ),
        (
            {"answer": "a" * (MAX_ANSWER_CHARS + 1)},
            "answer",
            "'answer' has 20,001 characters; at most 20,000 are allowed",
        ),
        ({"category": "c" * 101}, "category", "'category' has 101 characters"),
    ],
)
def test_texts_need_a_visible_character_and_fit_the_limits(
    entry: dict[str, str], field: str, message: str
) -> None:
    with pytest.raises(InvalidEntry, match=message) as raised:
        entry_from_mapping({"id": "a", "question": "Q?", "answer": "A.", **entry})
    assert raised.value.field == field


def test_texts_are_nfc_normalized_and_keep_line_breaks() -> None:
    entry = entry_from_mapping(
        {
            "id": "a",
            "questions": ["Caf\u00e9 hours?", "Cafe\u0301 hours?"],
            "answer": "Mon-Fri:\n\t9-5.",
        }
    )
    assert entry.questions == ("Caf\u00e9 hours?",)
    assert entry.answer == "Mon-Fri:\n\t9-5."


def test_a_kb_file_breaking_the_rules_is_refused_naming_the_row(tmp_path: Path) -> None:
    rows = "id,question,answer\nok,Q?,A.\n"
    cases = [
        ("zw\u200bid,Q?,A.\n", r"line 3, column id: id 'zw\\u200bid' holds U\+200B"),
        ("b,\u200b,A.\n", r"line 3, column question: the question of FAQ 'b' must be non-empty"),
        ("b,Q?,\u0000\n", r"line 3, column answer: the answer of FAQ 'b' must be non-empty"),
        (f"b,{'q' * 1001},A.\n", r"line 3, column question: .* has 1,001 characters"),
        (f"b,Q?,{'a' * 20_001}\n", r"line 3, column answer: .* has 20,001 characters"),
    ]
    for row, message in cases:
        path = write(tmp_path / "kb.csv", rows + row)
        with pytest.raises(DataError, match=message):
            KnowledgeBase.load(path)
    twins = write(tmp_path / "twins.csv", rows + "caf\u00e9,Q1?,A.\ncafe\u0301,Q2?,A.\n")
    assert KnowledgeBase.load(twins)["caf\u00e9"].questions == ("Q1?", "Q2?")


@pytest.mark.data
@pytest.mark.skipif(not SHARED_FAQ.is_dir(), reason="needs ../shared/data/faq")
@pytest.mark.parametrize("name", ["banking77", "clinc150", "stackfaq"])
def test_the_benchmark_kbs_meet_the_contract(name: str) -> None:
    assert len(KnowledgeBase.load(SHARED_FAQ / name / "kb.csv")) > 0


def test_a_question_under_two_faq_ids_is_warned_about(tmp_path: Path, caplog) -> None:
    path = write(
        tmp_path / "kb.csv",
        "id,question,answer\na,How do I pay?,By card.\nb,how do I  pay?,By invoice.\n"
        "b,Can I pay by invoice?,\nc,Where is my parcel?,Tracking page.\n",
    )
    with caplog.at_level("WARNING"):
        kb = KnowledgeBase.load(path)
    assert len(kb) == 3  # loaded all the same
    (record,) = [r for r in caplog.records if "more than one FAQ id" in r.getMessage()]
    message = record.getMessage()
    assert "1 question" in message and "'How do I pay?'" in message and "'a', 'b'" in message
    assert "Fix:" in message


def test_a_json_record_with_question_and_questions_keeps_both(tmp_path: Path) -> None:
    record = {"id": "pay", "question": "How do I pay?", "questions": ["Payment options?"]}
    record["answer"] = "By card."
    kb = KnowledgeBase.load(write(tmp_path / "kb.jsonl", json.dumps(record) + "\n"))
    assert kb["pay"].questions == ("How do I pay?", "Payment options?")
