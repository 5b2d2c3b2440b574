"""Record readers and labelled files: hostile encodings, headers and JSON give clean DataErrors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from threefold.core.errors import DataError
from threefold.core.labelled_data import read_labelled

ROWS = [("profit rose", "pos"), ("sales grew", "pos"), ("profit fell", "neg"), ("losses", "neg")]


def csv_text() -> str:
    return "text,label\n" + "".join(f"{text},{label}\n" for text, label in ROWS)


def jsonl_text() -> str:
    return "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in ROWS)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("excel.csv", "\ufeff" + csv_text()),
        ("bom.jsonl", "\ufeff" + jsonl_text()),
        ("bom.json", "\ufeff" + json.dumps([{"text": t, "label": lab} for t, lab in ROWS])),
    ],
)
def test_a_utf8_bom_is_not_part_of_the_first_column_name(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    texts, labels = read_labelled(path)
    assert texts[0] == "profit rose"
    assert labels == ["pos", "pos", "neg", "neg"]


@pytest.mark.parametrize("name", ["latin1.csv", "latin1.jsonl", "latin1.json"])
def test_a_latin1_file_is_a_data_error_naming_the_fix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    text = csv_text() if name.endswith(".csv") else jsonl_text()
    if name.endswith(".json"):
        text = json.dumps([{"text": t, "label": lab} for t, lab in ROWS], ensure_ascii=False)
    path.write_bytes(text.replace("profit rose", "café profit").encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8.*save the file as UTF-8"):
        read_labelled(path)


@pytest.mark.parametrize("name", ["deep.json", "deep.jsonl"])
def test_deeply_nested_json_is_a_data_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="nested too deeply"):
        read_labelled(path)


def test_a_repeated_csv_column_name_is_an_error_not_a_silent_pick(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(
        "text,label,label\n" + "".join(f"{t},{lab},other\n" for t, lab in ROWS), encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"line 1: .*\['label'\] more than once"):
        read_labelled(path)


def test_a_malformed_csv_row_is_reported_at_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(csv_text() + "x" * 200_000 + ",pos\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 6: malformed CSV: field larger"):
        read_labelled(path)


@pytest.mark.parametrize("label", ["NaN", '["pos"]', '{"name": "pos"}'])
def test_a_nan_or_structured_json_label_is_not_a_class(tmp_path: Path, label: str) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(jsonl_text() + f'{{"text": "flat", "label": {label}}}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 5, column label: expected a label"):
        read_labelled(path)
