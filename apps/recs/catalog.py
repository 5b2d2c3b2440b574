"""The item catalog: validated items with the text the ranker reads; ids as recs stores them."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threefold.core.errors import DataError
from threefold.core.ids import check_id, describe, is_visible
from threefold.core.tables import read_records

logger = logging.getLogger(__name__)
REQUIRED_COLUMNS = ("item_id", "title", "description", "category")
OPTIONAL_COLUMNS = ("price", "tags", "metadata")
ITEM_FIELDS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)  # what an item from the API may hold
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 5_000
CATEGORY_SEPARATOR = "|"
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ITEM_ID_FIX = (
    "choose an item_id the rule allows (an item already stored under such an id can still be "
    "read, recommended and deleted: DELETE it and add it again under an allowed id)"
)


def stored_id(name: str, value: str, *, checked: bool) -> str:
    """`value` as recs stores an id (a user's, an item's): trimmed, at most MAX_ID_LENGTH
    characters, otherwise as given.

    Not NFC-normalized: a user's history, purchases and shared-log entries, and an item's
    catalog entry and vectors, are keyed by the id as posted (those stored before ids had a rule
    too), so `rene\u0301e` and `ren\u00e9e` stay two ids.
    `checked` (an id the API creates or changes: a posted user id, an added or replaced item's
    id): the shared character rule too (`core.ids.check_id`, no control, format, bidi or
    blank-filler characters, something visible), so the store never shows a reordered or blank
    name. An id looked up as stored (an event's item id) and a file's ids are the operator's own:
    only trimmed and bounded. DataError names `name` and says what was found (escaped) and what
    an id may hold.
    """
    return check_id(
        value, field=name, max_chars=MAX_ID_LENGTH, normalize=False, as_given=not checked
    )


def split_categories(category: str) -> tuple[str, ...]:
    """The category names in an item's `category` field ('|'-separated, trimmed, no blanks)."""
    return tuple(c.strip() for c in category.split(CATEGORY_SEPARATOR) if c.strip())


@dataclass(frozen=True)
class Item:
    """One catalog entry; `category` may hold several names joined by '|' (MovieLens genres)."""

    item_id: str
    title: str
    description: str
    category: str
    price: float | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def categories(self) -> tuple[str, ...]:
        return split_categories(self.category)

    def in_category(self, name: str) -> bool:
        """Case-insensitive match against any of the item's categories."""
        wanted = name.strip().lower()
        return any(c.lower() == wanted for c in self.categories)

    @property
    def text(self) -> str:
        """The text embedded for this item: title, categories, tags, description."""
        parts = [self.title, ", ".join(self.categories)]
        if self.tags:
            parts.append(", ".join(self.tags))
        if self.description:
            parts.append(self.description)
        return ". ".join(p.rstrip(". ") for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "item_id": self.item_id,
            "title": self.title,
            "description": self.description,
            "category": self.category,
        }
        if self.price is not None:
            data["price"] = self.price
        if self.tags:
            data["tags"] = list(self.tags)
        if self.metadata:
            data["metadata"] = self.metadata
        return data


def parse_item(
    values: Mapping[str, Any],
    *,
    path: str | None = None,
    line: int | None = None,
    strict: bool = False,
) -> Item:
    """Validate one record (from a file or a JSON body); DataError names the bad column.

    `strict` (an item the API adds or replaces): its `item_id` must follow the id character rule
    (`stored_id`, kept as given), its title and each category name must hold something visible
    (`core.ids.is_visible`) and fields other than `ITEM_FIELDS` are refused. A file's row
    or a replayed catalog change (stored before the rule) may hold any id `parse_item` checks
    (trimmed, bounded, no control character) and more columns.
    """

    def fail(column: str, message: str) -> DataError:
        return DataError(message, path=path, line=line, column=column)

    if strict and (unknown := sorted(set(values) - set(ITEM_FIELDS))):
        raise fail(unknown[0], f"unknown field(s) {unknown}; an item has {sorted(ITEM_FIELDS)}")
    texts: dict[str, str] = {}
    for column in REQUIRED_COLUMNS:
        value = values.get(column)
        if isinstance(value, int) and not isinstance(value, bool) and column == "item_id":
            if strict:  # as an event's ids: the API takes JSON strings, files may hold numbers
                raise fail(
                    column, f"'item_id' must be a string, found number {value}; send \"{value}\""
                )
            value = str(value)
        if not isinstance(value, str):
            found = "nothing" if value is None else type(value).__name__
            raise fail(column, f"{column!r} must be text, found {found}")
        if strict and column == "item_id":
            try:
                stored_id(column, value, checked=True)
            except DataError as exc:
                raise fail(column, f"{exc}; {ITEM_ID_FIX}") from None
        value = value.strip()
        if column != "description" and not value:
            raise fail(column, f"{column!r} must not be empty")
        limit = MAX_ID_LENGTH if column == "item_id" else MAX_TEXT_LENGTH
        if len(value) > limit:
            raise fail(column, f"{column!r} is {len(value)} characters; the limit is {limit}")
        if column != "description" and CONTROL_CHARACTERS.search(value):
            raise fail(column, f"{column!r} holds a control character (NUL, ESC, ...); remove it")
        texts[column] = value
    if not split_categories(texts["category"]):
        raise fail(
            "category",
            f"'category' {texts['category'][:40]!r} names no category; give one name, or "
            f"several joined by {CATEGORY_SEPARATOR!r}",
        )
    if strict:  # the store would show a blank title or category name
        for column, text in [("title", texts["title"])] + [
            ("category", name) for name in split_categories(texts["category"])
        ]:
            if not any(is_visible(char) for char in text):
                found = ", ".join(dict.fromkeys(describe(char) for char in text if char != " "))
                raise fail(
                    column,
                    f"{column!r} {text[:40]!a} holds nothing visible ({found}); give it "
                    "a letter, digit, punctuation mark or symbol",
                )
    return Item(
        item_id=texts["item_id"],
        title=texts["title"],
        description=texts["description"],
        category=texts["category"],
        price=_parse_price(values.get("price"), fail),
        tags=_parse_tags(values.get("tags"), fail),
        metadata=_parse_metadata(values.get("metadata"), fail),
    )


def _parse_price(value: Any, fail) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise fail("price", f"'price' must be a number, found {value!r}")
    try:
        price = float(value)
    except (TypeError, ValueError):
        raise fail("price", f"'price' must be a number, found {value!r}") from None
    if not math.isfinite(price) or price < 0:
        raise fail("price", f"'price' must be a non-negative number, found {value!r}")
    return price


def _parse_tags(value: Any, fail) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = value.replace(";", ",").split(",")
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise fail("tags", f"'tags' must be a list of strings or 'a;b' text, found {value!r}")
    return tuple(t.strip() for t in value if t.strip())


def _parse_metadata(value: Any, fail) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise fail("metadata", f"'metadata' text must be a JSON object: {exc.msg}") from None
    if not isinstance(value, dict):
        raise fail("metadata", f"'metadata' must be an object, found {type(value).__name__}")
    return value


def content_hash(item: Item) -> int:
    """A 64-bit hash of everything an item shows (metadata too), the same in every process."""
    metadata = json.dumps(item.metadata, sort_keys=True, default=str) if item.metadata else ""
    fields = (item.item_id, item.title, item.description, item.category, item.price, item.tags)
    text = repr((*fields, metadata))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Catalog:
    """Items by id, in insertion order; add replaces an existing id."""

    def __init__(self, items: Iterable[Item] = ()) -> None:
        self._items: dict[str, Item] = {}
        self._categories: list[str] | None = None
        self._digest: int | None = None  # computed at the first `digest`, then kept up to date
        self._changes = 0  # a `categories` computed across a change is not kept
        self._lock = threading.Lock()
        for item in items:
            self.add(item)

    def add(self, item: Item) -> bool:
        """Insert or replace; returns True when the id was new."""
        with self._lock:
            replaced = self._items.get(item.item_id)
            self._items[item.item_id] = item
            self._changed(replaced, item)
        return replaced is None

    def remove(self, item_id: str) -> Item | None:
        with self._lock:
            removed = self._items.pop(item_id, None)
            self._changed(removed, None)
        return removed

    def _changed(self, before: Item | None, after: Item | None) -> None:
        self._changes += 1
        self._categories = None
        if self._digest is not None:
            for item in (before, after):
                if item is not None:
                    self._digest ^= content_hash(item)

    @property
    def digest(self) -> str:
        """16 hex digits naming the items' content (ids, text, price, tags, metadata; not their
        order): two catalogs with one digest hold the same items. Computed once (about 3 s at a
        million items), then updated by each change."""
        with self._lock:
            if self._digest is None:
                self._digest = 0
                for item in self._items.values():
                    self._digest ^= content_hash(item)
            return f"{self._digest:016x}"

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    def __getitem__(self, item_id: str) -> Item:
        return self._items[item_id]

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        """Over a snapshot: admin edits on other threads may add items meanwhile."""
        return iter(list(self._items.values()))

    @property
    def ids(self) -> list[str]:
        return list(self._items)

    @property
    def categories(self) -> list[str]:
        """Every category, sorted; kept until the next change (every request reads it).

        Computed from a snapshot of the items, and kept only when no edit landed meanwhile.
        """
        cached = self._categories
        if cached is None:
            changes = self._changes
            cached = sorted({c for item in self for c in item.categories})
            with self._lock:
                if changes == self._changes:
                    self._categories = cached
        return list(cached)


def load_catalog(path: str | Path) -> Catalog:
    """Read items from CSV/JSON/JSONL; duplicate ids and bad values name file, line and column.

    The file is the operator's own data: an item_id the API's id rule refuses (a bidi override,
    a zero-width space, nothing visible) loads as before, with one warning for the file, as a
    seed log's user ids do (`events.load_events`); the API refuses to change such an item.
    """
    path_text = str(path)
    records = read_records(
        path,
        required=REQUIRED_COLUMNS,
        hint="(the catalog needs item_id, title, description, category)",
    )
    catalog = Catalog()
    first_line: dict[str, int] = {}
    refused: list[tuple[int, DataError]] = []  # (line, why) of ids the API's rule refuses
    for record in records:
        item = parse_item(record.values, path=path_text, line=record.line)
        try:
            stored_id("item_id", item.item_id, checked=True)
        except DataError as exc:
            refused.append((record.line, exc))
        if item.item_id in first_line:
            raise DataError(
                f"duplicate item_id {item.item_id!r} (first seen on line "
                f"{first_line[item.item_id]}); item ids must be unique",
                path=path_text,
                line=record.line,
                column="item_id",
            )
        first_line[item.item_id] = record.line
        catalog.add(item)
    if refused:
        line, why = refused[0]
        logger.warning(
            "%s: %d item_id(s) the id rule refuses, loaded as before (read, recommended and "
            "deleted as usual, but the API refuses to change them: rename them in the file); "
            "the first, line %d: %s",
            path_text,
            len(refused),
            line,
            why,
        )
    return catalog
