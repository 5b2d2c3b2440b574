"""The FAQ knowledge base: entries with paraphrased questions, loaded from CSV/JSON/JSONL."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threefold.core.errors import DataError
from threefold.core.tables import read_records

logger = logging.getLogger(__name__)

MAX_ID_CHARS = 128
KNOWN_COLUMNS = ("id", "question", "questions", "answer", "category")


@dataclass(frozen=True)
class FaqEntry:
    """One FAQ: a stable id, one or more paraphrased questions, the answer, an optional category."""

    id: str
    questions: tuple[str, ...]
    answer: str
    category: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def question(self) -> str:
        """The canonical (first) question, shown as a suggestion."""
        return self.questions[0]

    def texts(self, *, with_answer: bool) -> list[tuple[str, str]]:
        """(vector key, text) pairs this entry contributes to the index."""
        pairs = [(f"q{i}", q) for i, q in enumerate(self.questions)]
        if with_answer:
            pairs.append(("a", self.answer))
        return pairs

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "questions": list(self.questions),
            "answer": self.answer,
            "category": self.category,
            "metadata": dict(self.metadata),
        }


def entry_from_mapping(value: Mapping[str, Any], *, where: str = "entry") -> FaqEntry:
    """Validate one entry given as a mapping (admin API, JSON file); ValueError names the field."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object, found {type(value).__name__}")
    faq_id = _clean_id(value.get("id"), where)
    questions_raw = value.get("questions")
    if questions_raw is None and "question" in value:
        questions_raw = [value["question"]]
    if not isinstance(questions_raw, list) or not questions_raw:
        raise ValueError(
            f"{where}: 'questions' must be a non-empty list of strings (or give 'question'), "
            f"found {questions_raw!r}"
        )
    questions: list[str] = []
    for i, question in enumerate(questions_raw):
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"{where}: questions[{i}] must be non-empty text, found {question!r}")
        if question.strip() not in questions:
            questions.append(question.strip())
    answer = value.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"{where}: 'answer' must be non-empty text, found {answer!r}")
    category = value.get("category") or ""
    if not isinstance(category, str):
        raise ValueError(f"{where}: 'category' must be text, found {type(category).__name__}")
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{where}: 'metadata' must be an object, found {type(metadata).__name__}")
    return FaqEntry(
        id=faq_id,
        questions=tuple(questions),
        answer=answer.strip(),
        category=category.strip(),
        metadata={str(k): str(v) for k, v in metadata.items()},
    )


def _clean_id(value: object, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: 'id' must be non-empty text, found {value!r}")
    text = value.strip()
    if len(text) > MAX_ID_CHARS or any(ch in text for ch in "#\n\r\t"):
        raise ValueError(
            f"{where}: id {text[:40]!r} must be at most {MAX_ID_CHARS} characters without "
            "'#', tabs or line breaks"
        )
    return text


class KnowledgeBase:
    """An ordered, immutable collection of FAQ entries keyed by id; edits return a new one."""

    def __init__(self, entries: Iterable[FaqEntry] = ()) -> None:
        self._entries: dict[str, FaqEntry] = {}
        for entry in entries:
            if entry.id in self._entries:
                raise ValueError(f"duplicate FAQ id {entry.id!r}")
            self._entries[entry.id] = entry

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[FaqEntry]:
        return iter(self._entries.values())

    def __contains__(self, faq_id: object) -> bool:
        return faq_id in self._entries

    def __getitem__(self, faq_id: str) -> FaqEntry:
        return self._entries[faq_id]

    def get(self, faq_id: str) -> FaqEntry | None:
        return self._entries.get(faq_id)

    @property
    def ids(self) -> list[str]:
        return list(self._entries)

    @property
    def n_questions(self) -> int:
        return sum(len(e.questions) for e in self)

    def topics(self, limit: int = 5) -> list[str]:
        """What the KB covers, for "I can help with ...": its categories, most FAQs first."""
        counts: dict[str, int] = {}
        for entry in self:
            if entry.category:
                counts[entry.category] = counts.get(entry.category, 0) + 1
        return sorted(counts, key=lambda c: (-counts[c], c))[:limit]

    def with_changes(
        self, upserts: Iterable[FaqEntry] = (), deletes: Iterable[str] = ()
    ) -> KnowledgeBase:
        """A new knowledge base with entries added/replaced and ids removed."""
        entries = dict(self._entries)
        for faq_id in deletes:
            entries.pop(faq_id, None)
        for entry in upserts:
            entries[entry.id] = entry
        return KnowledgeBase(entries.values())

    def to_json(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self]

    def save(self, path: str | Path) -> None:
        """Write as a JSON array (the format `load` reads back), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kb-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle, ensure_ascii=False, indent=1)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeBase:
        """Load CSV (`id,question,answer[,category,...]`, one row per paraphrase) or JSON/JSONL.

        JSON records may carry `questions: [...]` instead of `question`. Rows sharing an id are
        paraphrases: the answer (and category) may be repeated or left blank after the first row,
        but two different answers for one id are an error naming the line. Extra columns become
        metadata.
        """
        path = Path(path)
        hint = "(expected id, question, answer; optional category)"
        records = read_records(path, required=("id",), hint=hint)
        columns = set().union(*(r.values.keys() for r in records))
        if "question" not in columns and "questions" not in columns:
            raise DataError(
                f"missing column 'question'; found {sorted(columns)}. Rename the question column "
                "to 'question' (one row per paraphrase) or give JSON records 'questions': [...]",
                path=str(path),
            )
        if "answer" not in columns:
            raise DataError(
                f"missing column 'answer'; found {sorted(columns)}. Add an 'answer' column",
                path=str(path),
            )
        drafts: dict[str, dict[str, Any]] = {}
        for record in records:
            _merge_record(drafts, record.values, path=str(path), line=record.line)
        entries = []
        for faq_id, draft in drafts.items():
            if not draft["answer"]:
                raise DataError(
                    f"FAQ id {faq_id!r} has no answer in any of its rows; add the answer text",
                    path=str(path),
                    line=draft["line"],
                    column="answer",
                )
            entries.append(
                FaqEntry(
                    id=faq_id,
                    questions=tuple(draft["questions"]),
                    answer=draft["answer"],
                    category=draft["category"],
                    metadata=draft["metadata"],
                )
            )
        kb = cls(entries)
        logger.info("loaded %d FAQ entries (%d questions) from %s", len(kb), kb.n_questions, path)
        return kb


def _merge_record(
    drafts: dict[str, dict[str, Any]], values: Mapping[str, Any], *, path: str, line: int
) -> None:
    try:
        faq_id = _clean_id(values.get("id"), "record")
    except ValueError as exc:
        raise DataError(
            str(exc).removeprefix("record: "), path=path, line=line, column="id"
        ) from None
    questions = values.get("questions")
    if questions is None:
        questions = [values.get("question")]
    if not isinstance(questions, list):
        raise DataError(
            f"'questions' must be a list of strings, found {type(questions).__name__}",
            path=path,
            line=line,
            column="questions",
        )
    draft = drafts.setdefault(
        faq_id, {"questions": [], "answer": "", "category": "", "metadata": {}, "line": line}
    )
    for question in questions:
        if not isinstance(question, str) or not question.strip():
            raise DataError(
                f"expected non-empty question text for id {faq_id!r}, found {question!r}",
                path=path,
                line=line,
                column="question",
            )
        if question.strip() not in draft["questions"]:
            draft["questions"].append(question.strip())
    for column in ("answer", "category"):
        value = values.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, str):
            raise DataError(
                f"expected text, found {type(value).__name__}", path=path, line=line, column=column
            )
        value = value.strip()
        if draft[column] and draft[column] != value:
            raise DataError(
                f"FAQ id {faq_id!r} already has a different {column} (line {draft['line']}); "
                f"rows sharing an id must repeat the same {column} or leave it blank",
                path=path,
                line=line,
                column=column,
            )
        draft[column] = value
    for key, value in values.items():
        if key not in KNOWN_COLUMNS and value not in (None, ""):
            if key == "metadata" and isinstance(value, Mapping):
                draft["metadata"].update({str(k): str(v) for k, v in value.items()})
            else:
                draft["metadata"][str(key)] = value if isinstance(value, str) else json.dumps(value)
