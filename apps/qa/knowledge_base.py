"""The FAQ knowledge base: entries with paraphrased questions, loaded from CSV/JSON/JSONL."""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threefold.core import ids
from threefold.core.errors import DataError
from threefold.core.files import write_json_atomic
from threefold.core.ids import describe, is_visible
from threefold.core.ids import normalized_id as normalized_id  # the admin API's URL ids
from threefold.core.tables import read_records

logger = logging.getLogger(__name__)

KNOWN_COLUMNS = ("id", "question", "questions", "answer", "category")
# Limits that fit a FAQ with room to spare: the longest question of the shipped and benchmark
# KBs (store, CLINC150, banking77, StackFAQ) has 433 characters, the longest answer 3,796.
MAX_ID_CHARS = 128
MAX_QUESTION_CHARS = 1_000
MAX_ANSWER_CHARS = 20_000
MAX_CATEGORY_CHARS = 100
ID_REFUSED = "#"  # what FAQ ids refuse beyond the shared rule (`core.ids`): a URL's fragment mark
TEXT_CONTROLS = "\t\n\r"  # the only control characters a question, answer or category may hold


class InvalidEntry(ValueError):
    """An FAQ entry that breaks the contract; `field` names the field (id, questions, ...)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_id(value: object) -> str:
    """The FAQ id as stored: the shared id rule (`core.ids.check_id`: NFC-normalized, trimmed,
    1 to MAX_ID_CHARS characters) without '#'; ValueError saying what was found and what an id
    may hold. Only text is an id: a number is a type error."""
    return ids.check_id(id_text(value), field="id", max_chars=MAX_ID_CHARS, also_refused=ID_REFUSED)


def id_text(value: object) -> str:
    """`value` when it is text; a ValueError naming what it is otherwise (a number: quote it)."""
    if not isinstance(value, str):
        quoted = isinstance(value, int | float) and not isinstance(value, bool)
        raise ValueError(
            f"'id' must be text (a JSON string), found {type(value).__name__} {value!r:.40}"
            + (f'; send it quoted: "{value}"' if quoted else "")
        )
    return value


def check_text(value: object, name: str, *, max_chars: int, optional: bool = False) -> str:
    """A question, answer or category as stored (NFC-normalized, trimmed); ValueError unless
    it is text with a visible character (`core.ids.is_visible`), at most `max_chars` characters
    and no control characters but tabs and line breaks. `optional`: "" (or a blank text) is
    allowed and stays ""."""
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be text, found {type(value).__name__} {value!r:.40}")
    text = unicodedata.normalize("NFC", value or "").strip()
    if optional and not text:
        return ""
    if not any(is_visible(char) for char in text):
        raise ValueError(
            f"{name} must be non-empty text with a visible character (a letter, digit, "
            f"punctuation or symbol), found {value!r:.40}"
        )
    if len(text) > max_chars:
        raise ValueError(f"{name} has {len(text):,} characters; at most {max_chars:,} are allowed")
    for position, char in enumerate(text):
        if unicodedata.category(char) == "Cc" and char not in TEXT_CONTROLS:
            raise ValueError(
                f"{name} holds {describe(char)} at position {position}; only tabs and line "
                "breaks are allowed among control characters"
            )
    return text


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


def entry_from_mapping(
    value: Mapping[str, Any], *, where: str = "entry", stored_id: str | None = None
) -> FaqEntry:
    """Validate one entry given as a mapping (admin API, review); InvalidEntry names the field.

    The contract: `check_id` for the id (text only), `check_text` for each question (at most
    MAX_QUESTION_CHARS), the answer (MAX_ANSWER_CHARS) and the optional category
    (MAX_CATEGORY_CHARS). Questions that are the same once normalized are kept once.

    `stored_id`: the entry replaces the FAQ stored under this id and keeps it as stored,
    unchecked: the id rule is for new ids, and an FAQ saved before a rule was added stays
    editable. The mapping's own 'id' is not read then (the caller matches it to that FAQ).
    """
    if not isinstance(value, Mapping):
        raise InvalidEntry(f"{where}: expected an object, found {type(value).__name__}", field="")

    faq_id = (
        stored_id if stored_id is not None else _checked(where, "id", check_id, value.get("id"))
    )
    questions_raw = value.get("questions")
    if questions_raw is None and "question" in value:
        questions_raw = [value["question"]]
    if not isinstance(questions_raw, list) or not questions_raw:
        raise InvalidEntry(
            f"{where}: 'questions' must be a non-empty list of strings (or give 'question'), "
            f"found {questions_raw!r:.60}",
            field="questions",
        )
    questions: list[str] = []
    for i, raw in enumerate(questions_raw):
        question = _checked(
            where, "questions", check_text, raw, f"questions[{i}]", max_chars=MAX_QUESTION_CHARS
        )
        if question not in questions:
            questions.append(question)
    answer = _checked(
        where, "answer", check_text, value.get("answer"), "'answer'", max_chars=MAX_ANSWER_CHARS
    )
    category = _checked(
        where,
        "category",
        check_text,
        value.get("category") or "",
        "'category'",
        max_chars=MAX_CATEGORY_CHARS,
        optional=True,
    )
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise InvalidEntry(
            f"{where}: 'metadata' must be an object, found {type(metadata).__name__}",
            field="metadata",
        )
    return FaqEntry(
        id=faq_id,
        questions=tuple(questions),
        answer=answer,
        category=category,
        metadata={str(k): str(v) for k, v in metadata.items()},
    )


def _checked(where: str, field: str, check: Callable[..., str], *args: Any, **kwargs: Any) -> str:
    """`check(*args, **kwargs)`, its ValueError as an InvalidEntry of `field`."""
    try:
        return check(*args, **kwargs)
    except ValueError as exc:
        raise InvalidEntry(f"{where}: {exc}", field=field) from None


def question_key(question: str) -> str:
    """How two questions are compared for sameness: casefolded, spaces collapsed."""
    return " ".join(question.casefold().split())


class KnowledgeBase:
    """An ordered, immutable collection of FAQ entries keyed by id; edits return a new one."""

    def __init__(self, entries: Iterable[FaqEntry] = ()) -> None:
        self._entries: dict[str, FaqEntry] = {}
        self._by_normalized_id: dict[str, str] = {}  # NFC id -> the first stored id equal to it
        for entry in entries:
            if entry.id in self._entries:
                raise ValueError(f"duplicate FAQ id {entry.id!r}")
            self._entries[entry.id] = entry
            self._by_normalized_id.setdefault(normalized_id(entry.id), entry.id)

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

    def resolve_id(self, faq_id: str) -> str | None:
        """The stored id that `faq_id` (from a URL or a request body) names: itself when stored,
        else the stored id equal to it once both are NFC-normalized (the first, in a KB saved
        with several such spellings); None when there is none.

        New ids are stored NFC-normalized, but a bot version saved before that rule may hold a
        decomposed `cafe\u0301`: it is listed as saved and found by either spelling.
        """
        if faq_id in self._entries:
            return faq_id
        return self._by_normalized_id.get(normalized_id(faq_id))

    @property
    def ids(self) -> list[str]:
        return list(self._entries)

    @property
    def n_questions(self) -> int:
        return sum(len(e.questions) for e in self)

    def question_owners(self) -> dict[str, list[str]]:
        """Each question's `question_key` -> the ids of the FAQs that have it, in KB order."""
        owners: dict[str, list[str]] = {}
        for entry in self._entries.values():
            for question in entry.questions:
                ids = owners.setdefault(question_key(question), [])
                if entry.id not in ids:
                    ids.append(entry.id)
        return owners

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
        """Write as a JSON array, atomically: `load_saved` reads it back exactly (`load` reads it
        as a KB file, checked against the entry contract)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_json())

    @classmethod
    def load_saved(cls, path: str | Path) -> KnowledgeBase:
        """A KB written by `save` (a bot version's kb.json), read back exactly as written.

        Nothing is normalized or refused: its entries were checked when they entered, the bot's
        index names their ids as saved, and a KB saved before a rule was added must still load.
        """
        path = Path(path)
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                FaqEntry(
                    id=r["id"],
                    questions=tuple(r["questions"]),
                    answer=r["answer"],
                    category=r.get("category", ""),
                    metadata=dict(r.get("metadata", {})),
                )
                for r in records
            )
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"not a knowledge base saved by threefold ({type(exc).__name__}: {exc}); "
                "save it again (or load a KB file with `KnowledgeBase.load`)",
                path=str(path),
            ) from exc

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeBase:
        """Load CSV (`id,question,answer[,category,...]`, one row per paraphrase) or JSON/JSONL,
        every row checked against the entry contract (`check_id`, `check_text`).

        JSON records may carry `questions: [...]` instead of (or beside) `question`. Rows sharing
        an id are paraphrases: the answer (and category) may be repeated or left blank after the
        first row, but two different answers for one id are an error naming the line. Extra
        columns become metadata. A question under several ids is warned about (the bot cannot
        tell those FAQs apart by it).
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
        _warn_of_shared_questions(kb, path)
        return kb


def _warn_of_shared_questions(kb: KnowledgeBase, path: Path) -> None:
    """One warning when a question (compared casefolded, spaces collapsed) is under several
    FAQ ids: the bot cannot tell those FAQs apart by it and asks the customer to choose."""
    shared = {key: ids for key, ids in kb.question_owners().items() if len(ids) > 1}
    if not shared:
        return
    shown: dict[str, str] = {}
    for entry in kb:
        for question in entry.questions:
            shown.setdefault(question_key(question), question)
    examples = "; ".join(
        f"{shown[key]!r} under {', '.join(repr(i) for i in ids)}"
        for key, ids in list(shared.items())[:3]
    )
    logger.warning(
        "%s: %d question(s) under more than one FAQ id (%s): the bot cannot tell those FAQs "
        "apart by them and asks the customer to choose. Fix: keep each question under one id, "
        "or merge the FAQs",
        path,
        len(shared),
        examples,
        extra={"fields": {"event": "kb_shared_questions", "path": str(path), "count": len(shared)}},
    )


def _merge_record(
    drafts: dict[str, dict[str, Any]], values: Mapping[str, Any], *, path: str, line: int
) -> None:
    """Add one row (CSV) or record (JSON) to the drafts by id, with the rules of
    `entry_from_mapping`, except that a JSON file's whole-number id is read as text ("7")."""

    def checked(column: str, check: Callable[..., str], *args: Any, **kwargs: Any) -> str:
        try:
            return check(*args, **kwargs)
        except ValueError as exc:
            raise DataError(str(exc), path=path, line=line, column=column) from None

    raw_id = values.get("id")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    faq_id = checked("id", check_id, raw_id)
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
    if "questions" in values and values.get("question") not in (None, ""):
        questions = [values["question"], *questions]  # a record may carry both: keep both
    draft = drafts.setdefault(
        faq_id, {"questions": [], "answer": "", "category": "", "metadata": {}, "line": line}
    )
    for question in questions:
        text = checked(
            "question",
            check_text,
            question,
            f"the question of FAQ {faq_id!r}",
            max_chars=MAX_QUESTION_CHARS,
        )
        if text not in draft["questions"]:
            draft["questions"].append(text)
    for column, max_chars in (("answer", MAX_ANSWER_CHARS), ("category", MAX_CATEGORY_CHARS)):
        value = values.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # a paraphrase row may leave them blank
        value = checked(
            column, check_text, value, f"the {column} of FAQ {faq_id!r}", max_chars=max_chars
        )
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
