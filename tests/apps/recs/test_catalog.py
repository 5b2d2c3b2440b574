"""Catalog loading and validation: errors name the file, line and column."""

from __future__ import annotations

import pytest

from threefold.apps.recs.catalog import Catalog, Item, load_catalog, parse_item
from threefold.core.errors import DataError

HEADER = "item_id,title,description,category,price,tags\n"


def test_shipped_catalog_has_six_categories_of_real_items(catalog):
    assert len(catalog) == 72
    assert catalog.categories == [
        "Beauty",
        "Books",
        "Electronics",
        "Kitchen",
        "Outdoor",
        "Toys & Games",
    ]
    grinder = catalog["kt-002"]
    assert grinder.price == 89.0
    assert grinder.tags == ("coffee", "grinder", "espresso")
    assert grinder.text.startswith("Burr Coffee Grinder. Kitchen. coffee, grinder, espresso.")


def test_multi_genre_categories_match_any_genre():
    item = parse_item(
        {"item_id": 1, "title": "Toy Story", "description": "", "category": "Animation|Comedy"}
    )
    assert item.item_id == "1"
    assert item.categories == ("Animation", "Comedy")
    assert item.in_category("comedy")
    assert not item.in_category("Drama")


def test_json_and_jsonl_catalogs_load(tmp_path):
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(
        '{"item_id": "a", "title": "A", "description": "x", "category": "C", "tags": ["t"]}\n'
    )
    assert load_catalog(jsonl)["a"].tags == ("t",)
    as_json = tmp_path / "items.json"
    as_json.write_text(
        '{"items": [{"item_id": "b", "title": "B", "description": "", "category": "C"}]}'
    )
    assert load_catalog(as_json).ids == ["b"]


@pytest.mark.parametrize(
    ("rows", "line", "column", "message"),
    [
        ("a,A,desc,Books,9,\na,B,desc,Books,9,\n", 3, "item_id", "duplicate item_id 'a'"),
        ("a,A,desc,Books,cheap,\n", 2, "price", "'price' must be a number"),
        ("a,A,desc,Books,-1,\n", 2, "price", "non-negative"),
        ("a,,desc,Books,1,\n", 2, "title", "'title' must not be empty"),
        ("a,A,desc,,1,\n", 2, "category", "'category' must not be empty"),
        ("a,A,desc,| |,1,\n", 2, "category", "names no category"),
        ("a,A,desc,Bo\x00oks,1,\n", 2, "category", "holds a control character"),
        ("a\x1b[31m,A,desc,Books,1,\n", 2, "item_id", "holds a control character"),
    ],
)
def test_bad_rows_are_reported_with_line_and_column(tmp_path, rows, line, column, message):
    path = tmp_path / "items.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(DataError, match=message) as caught:
        load_catalog(path)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert str(path) in str(caught.value)


def test_missing_column_lists_what_was_found(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,name\n1,x\n")
    with pytest.raises(
        DataError, match=r"missing column\(s\) \['title', 'description', 'category'\]"
    ):
        load_catalog(path)


def test_categories_follow_every_change():
    catalog = Catalog([Item("a", "A", "", "Books"), Item("b", "B", "", "Toys|Games")])
    assert catalog.categories == ["Books", "Games", "Toys"]
    catalog.add(Item("c", "C", "", "Garden"))
    catalog.add(Item("b", "B", "", "Toys"))
    assert catalog.categories == ["Books", "Garden", "Toys"]
    catalog.remove("a")
    assert catalog.categories == ["Garden", "Toys"]


def test_the_digest_names_the_content_whatever_the_order_of_the_edits():
    """Workers whose catalogs differ must never report one version (it keys cached lists)."""
    lamp, mug = Item("a", "Lamp", "", "Home"), Item("b", "Mug", "", "Kitchen", price=4.0)
    catalog = Catalog([lamp, mug])
    before = catalog.digest
    assert Catalog([mug, lamp]).digest == before
    catalog.add(Item("b", "Mug", "", "Kitchen", price=5.0))
    assert catalog.digest != before
    catalog.add(Item("b", "Mug", "", "Kitchen", metadata={"colour": "red"}, price=4.0))
    assert catalog.digest != before  # metadata is shown too
    catalog.add(mug)
    assert catalog.digest == before
    catalog.remove("a")
    assert catalog.digest == Catalog([mug]).digest
    catalog.add(lamp)
    assert catalog.digest == before


def test_reading_the_catalog_while_an_admin_edit_adds_an_item_does_not_fail():
    """A request reads `categories` (or a ranker swap iterates the items) while an admin's edit
    adds an item on another thread; `Intruder` adds one mid-read, as that thread would."""
    catalog = Catalog()

    class Intruder(Item):
        @property
        def categories(self) -> tuple[str, ...]:
            catalog.add(Item("late", "Late Lamp", "", "Home"))
            return super().categories

    catalog.add(Item("a", "Kettle", "", "Kitchen"))
    catalog.add(Intruder("b", "Novel", "", "Books"))
    catalog.add(Item("c", "Tent", "", "Outdoor"))
    assert catalog.categories == ["Books", "Kitchen", "Outdoor"]  # the items when it began
    assert catalog.categories == ["Books", "Home", "Kitchen", "Outdoor"]  # then the edit shows
    added = [item.item_id for item in catalog if catalog.add(Item(f"{item.item_id}2", "", "", "X"))]
    assert added == ["a", "b", "c", "late"]


def test_an_api_item_is_held_to_the_id_rule_and_its_fields():
    """`strict` (an item from the API): the shared id rule, kept as given, no other fields."""
    fields = {"title": "Kite", "description": "", "category": "Toys"}
    assert parse_item({"item_id": " cafe\u0301 ", **fields}, strict=True).item_id == "cafe\u0301"
    with pytest.raises(DataError, match="U\\+202E RIGHT-TO-LEFT OVERRIDE") as caught:
        parse_item({"item_id": "a\u202eb", **fields}, strict=True)
    assert caught.value.column == "item_id"
    assert parse_item({"item_id": "a\u202eb", **fields}).item_id == "a\u202eb"  # a file's row
    unknown = r"unknown field\(s\) \['titel'\]; an item has \["
    with pytest.raises(DataError, match=unknown) as caught:
        parse_item({"item_id": "k", **fields, "titel": "Kite"}, strict=True)
    assert caught.value.column == "titel"
    assert parse_item({"item_id": "k", **fields, "titel": "Kite"}).title == "Kite"  # a file's
