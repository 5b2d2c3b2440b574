"""Read CSV, JSON and JSONL record files with errors that name file, line and column."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from threefold.core.errors import DataError

SUPPORTED_SUFFIXES = (".csv", ".json", ".jsonl")
CSV_FIELD_LIMIT = 8 << 20
"""Characters one CSV field may hold (Python's csv module stops at 128 KiB by default)."""


@dataclass(frozen=True)
class Record:
    """One row of a table with the line it came from (1-based, header is line 1 in CSV)."""

    line: int
    values: dict[str, object]


def read_records(
    path: str | Path,
    required: Sequence[str] = (),
    *,
    non_empty: Sequence[str] = (),
    hint: str = "",
) -> list[Record]:
    """Read a CSV (header row), JSON (array of objects) or JSONL file.

    Args:
        required: columns every record must have.
        non_empty: columns whose value must be a non-blank string.
        hint: appended to a missing-column error, e.g. "or pass --text-column NAME".
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file; expected one of {list(SUPPORTED_SUFFIXES)}", path=str(path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        records = list(_read_csv(path))
    elif suffix == ".jsonl":
        records = list(_read_jsonl(path))
    elif suffix == ".json":
        records = list(_read_json(path))
    else:
        raise DataError(
            f"unsupported file type {suffix!r}; expected one of {list(SUPPORTED_SUFFIXES)}",
            path=str(path),
        )
    if not records:
        raise DataError(
            "the file has no records (expected a header and at least one row)", path=str(path)
        )
    columns = set().union(*(r.values.keys() for r in records))
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; found {sorted(columns)}. "
            f"Rename the column(s){' ' + hint if hint else ''}",
            path=str(path),
        )
    for record in records:
        for column in required:
            if column not in record.values:
                raise DataError(
                    f"record has no {column!r}", path=str(path), line=record.line, column=column
                )
        for column in non_empty:
            value = record.values.get(column)
            if not isinstance(value, str) or not value.strip():
                raise DataError(
                    f"expected non-empty text in {column!r}, found {value!r}",
                    path=str(path),
                    line=record.line,
                    column=column,
                )
    return records


def _read_csv(path: Path) -> Iterable[Record]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # -sig: drop an Excel BOM
    except OSError as exc:
        raise DataError(f"cannot open: {exc}", path=str(path)) from exc
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    with handle:
        reader = csv.DictReader(handle, strict=True)
        try:
            header = reader.fieldnames
            if not header:
                return
            repeated = sorted({name for name in header if header.count(name) > 1})
            if repeated:
                raise DataError(
                    f"the header names column(s) {repeated} more than once, so the values of "
                    "all but the last would be dropped. Fix: rename or remove the duplicates",
                    path=str(path),
                    line=1,
                )
            for row in reader:
                line = reader.line_num
                if None in row:
                    raise DataError(
                        f"row has {len(header) + len(row[None])} fields, header has {len(header)}; "
                        "quote fields that contain commas",
                        path=str(path),
                        line=line,
                        column=len(header) + 1,
                    )
                if any(v is None for v in row.values()):
                    short = [k for k, v in row.items() if v is None]
                    raise DataError(
                        f"row has fewer fields than the header; missing {short}",
                        path=str(path),
                        line=line,
                        column=short[0],
                    )
                if not any((v or "").strip() for v in row.values()):
                    continue
                yield Record(line=line, values=dict(row))
        except csv.Error as exc:
            # the inner reader's line_num counts the line that failed, the DictReader's the last row
            line = reader.reader.line_num
            if "field larger than field limit" in str(exc):
                raise DataError(
                    f"a field is longer than {CSV_FIELD_LIMIT:,} characters. Fix: shorten the "
                    "text or save the file as JSONL; or close a quote that runs on to the end",
                    path=str(path),
                    line=line,
                ) from exc
            raise DataError(f"malformed CSV: {exc}", path=str(path), line=line) from exc
        except UnicodeDecodeError as exc:
            raise _not_utf8(path, exc) from exc


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DataError:
    return DataError(
        f"not UTF-8 text ({exc.reason}). Fix: save the file as UTF-8",
        path=str(path),
    )


def _read_jsonl(path: Path) -> Iterable[Record]:
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                yield _jsonl_record(path, number, raw)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    except OSError as exc:
        raise DataError(f"cannot read: {exc}", path=str(path)) from exc


class _RepeatedKeys(ValueError):
    """A JSON object names a key more than once (json would keep only the last value)."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(keys)
        self.keys = keys


def _object_without_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    value = dict(pairs)
    if len(value) < len(pairs):
        keys = [key for key, _ in pairs]
        raise _RepeatedKeys(sorted({key for key in keys if keys.count(key) > 1}))
    return value


def _repeated_keys(path: Path, exc: _RepeatedKeys, line: int | None) -> DataError:
    return DataError(
        f"a JSON object names {exc.keys} more than once, so all but the last value would be "
        "dropped. Fix: rename or remove the duplicates",
        path=str(path),
        line=line,
    )


def _loads(text: str) -> object:
    return json.loads(text, object_pairs_hook=_object_without_repeated_keys)


def _jsonl_record(path: Path, number: int, raw: str) -> Record:
    try:
        value = _loads(raw)
    except _RepeatedKeys as exc:
        raise _repeated_keys(path, exc, number) from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"invalid JSON: {exc.msg}", path=str(path), line=number, column=exc.colno
        ) from exc
    except RecursionError:
        raise DataError("JSON nested too deeply", path=str(path), line=number) from None
    if not isinstance(value, dict):
        raise DataError(
            f"expected a JSON object per line, found {type(value).__name__}",
            path=str(path),
            line=number,
            column=1,
        )
    return Record(line=number, values=value)


def _read_json(path: Path) -> Iterable[Record]:
    try:
        value = _loads(path.read_text(encoding="utf-8-sig"))
    except _RepeatedKeys as exc:
        raise _repeated_keys(path, exc, None) from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    except OSError as exc:
        raise DataError(f"cannot read: {exc}", path=str(path)) from exc
    except json.JSONDecodeError as exc:
        raise DataError(
            f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno, column=exc.colno
        ) from exc
    except RecursionError:
        raise DataError("JSON nested too deeply", path=str(path)) from None
    if isinstance(value, dict):
        arrays = sorted(key for key, item in value.items() if isinstance(item, list))
        if len(arrays) > 1:
            raise DataError(
                f"the JSON object holds {len(arrays)} arrays {arrays}; expected one array of "
                "records (or an object holding just one). Fix: keep only the records' array",
                path=str(path),
                line=1,
                column=1,
            )
        value = value[arrays[0]] if arrays else None
    if not isinstance(value, list):
        raise DataError(
            "expected a JSON array of objects (or an object holding one)",
            path=str(path),
            line=1,
            column=1,
        )
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise DataError(
                f"item {index} is {type(item).__name__}, expected an object", path=str(path), line=1
            )
        yield Record(line=index + 1, values=item)
