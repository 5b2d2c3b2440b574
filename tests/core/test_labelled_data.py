"""Labelled data helpers: stratified splits."""

from __future__ import annotations

from threefold.core.labelled_data import stratified_split


def test_stratified_split_holds_out_each_label_reproducibly() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 1
    kept, held = stratified_split(labels, 0.2, seed=7)
    assert sorted(kept + held) == list(range(16))
    assert [labels[i] for i in held].count("a") == 2
    assert [labels[i] for i in held].count("b") == 1
    assert "c" not in [labels[i] for i in held]  # a single example stays in training
    assert stratified_split(labels, 0.2, seed=7) == (kept, held)
    assert stratified_split(labels, 0.2, seed=8) != (kept, held)
