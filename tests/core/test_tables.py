"""Record readers and labelled files: hostile encodings, headers and JSON give clean DataErrors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from threefold.core.errors import DataError
from threefold.core.labelled_data import read_labelled
from threefold.core.tables import CSV_FIELD_LIMIT

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
    path = tmp_path / "bad.csv"
    path.write_text(csv_text() + '"quoted"tail,pos\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 6: malformed CSV: "):
        read_labelled(path)


def test_a_csv_text_longer_than_128_kib_is_read(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(csv_text() + "x" * 200_000 + ",pos\n", encoding="utf-8")
    texts, labels = read_labelled(path)
    assert len(texts[-1]) == 200_000 and labels[-1] == "pos"


def test_a_csv_field_over_the_limit_says_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text(csv_text() + '"' + "x" * (CSV_FIELD_LIMIT + 1) + '",pos\n', encoding="utf-8")
    with pytest.raises(
        DataError,
        match=r"line 6: a field is longer than 8,388,608 characters. "
        r"Fix: shorten the text or save the file as JSONL",
    ):
        read_labelled(path)


def test_a_json_object_holding_several_arrays_is_an_error_not_a_pick(tmp_path: Path) -> None:
    records = [{"text": t, "label": lab} for t, lab in ROWS]
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"meta": [{"text": "x", "label": "y"}], "data": records}))
    with pytest.raises(DataError, match=r"holds 2 arrays \['data', 'meta'\]; expected one"):
        read_labelled(path)
    path.write_text(json.dumps({"count": 4, "data": records}))  # one array: read
    assert read_labelled(path) == ([t for t, _ in ROWS], [lab for _, lab in ROWS])


@pytest.mark.parametrize("name", ["dup.jsonl", "dup.json"])
def test_a_repeated_json_key_is_an_error_not_a_silent_pick(tmp_path: Path, name: str) -> None:
    row = '{"text": "a", "label": "pos", "label": "neg"}'
    path = tmp_path / name
    path.write_text(jsonl_text() + row + "\n" if name.endswith("l") else f"[{row}]")
    where = r"line 5: " if name.endswith("l") else ""
    with pytest.raises(DataError, match=rf"{where}a JSON object names \['label'\] more than once"):
        read_labelled(path)


@pytest.mark.parametrize("label", ["NaN", '["pos"]', '{"name": "pos"}'])
def test_a_nan_or_structured_json_label_is_not_a_class(tmp_path: Path, label: str) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(jsonl_text() + f'{{"text": "flat", "label": {label}}}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 5, column label: expected a label"):
        read_labelled(path)


def test_whole_number_json_labels_are_one_class(tmp_path: Path) -> None:
    path = tmp_path / "numbers.jsonl"
    rows = [("up", 1), ("up again", 1.0), ("down", 0), ("down again", 0.0), ("half", 0.5)]
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    assert read_labelled(path)[1] == ["1", "1", "0", "0", "0.5"]


@pytest.mark.parametrize(
    ("name", "body", "found"),
    [
        (
            "bool.jsonl",
            '{"text": "a", "label": 1}\n{"text": "b", "label": true}\n',
            "'1' .* 'True'",
        ),
        ("text.csv", "text,label\na,1\nb,1.0\n", "'1' .* '1.0'"),
    ],
)
def test_labels_that_are_the_same_number_written_two_ways_are_an_error(
    tmp_path: Path, name: str, body: str, found: str
) -> None:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    with pytest.raises(
        DataError,
        match=rf"line {2 if name.endswith('l') else 3}, column label: "
        rf"labels {found} are the same number written two ways",
    ):
        read_labelled(path)
