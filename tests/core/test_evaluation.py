"""classification_report against values computed by hand."""

from __future__ import annotations

import pytest

from threefold.core.errors import ConfigError, DataError
from threefold.core.evaluation import classification_report


def test_three_class_report_matches_hand_computation() -> None:
    y_true = ["pos", "pos", "pos", "neg", "neg", "neu"]
    y_pred = ["pos", "pos", "neg", "neg", "pos", "neg"]
    report = classification_report(y_true, y_pred)

    # labels sorted: neg, neu, pos
    # neg: tp=1, predicted 3, support 2 -> P 1/3, R 1/2, F1 0.4
    # neu: tp=0, predicted 0, support 1 -> 0, 0, 0
    # pos: tp=2, predicted 3, support 3 -> P 2/3, R 2/3, F1 2/3
    assert report["n"] == 6
    assert report["accuracy"] == pytest.approx(3 / 6)
    assert report["per_class"]["neg"] == pytest.approx(
        {"precision": 1 / 3, "recall": 1 / 2, "f1": 0.4, "support": 2}
    )
    assert report["per_class"]["neu"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["per_class"]["pos"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    assert report["macro_f1"] == pytest.approx((0.4 + 0.0 + 2 / 3) / 3)
    assert report["confusion"] == {
        "labels": ["neg", "neu", "pos"],
        "matrix": [[1, 0, 1], [1, 0, 0], [1, 0, 2]],
    }


def test_perfect_predictions() -> None:
    report = classification_report(["a", "b", "b"], ["a", "b", "b"])
    assert report["accuracy"] == 1.0
    assert report["macro_f1"] == 1.0
    assert report["confusion"]["matrix"] == [[1, 0], [0, 2]]


def test_explicit_labels_fix_order_and_count_absent_classes() -> None:
    report = classification_report(["a", "a"], ["a", "a"], labels=["b", "a"])
    assert report["confusion"] == {"labels": ["b", "a"], "matrix": [[0, 0], [0, 2]]}
    assert report["per_class"]["b"]["support"] == 0
    assert report["macro_f1"] == pytest.approx(0.5)


def test_result_is_json_ready() -> None:
    import json

    report = classification_report(["x", "y"], ["y", "y"])
    assert json.loads(json.dumps(report)) == report


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ConfigError, match="same length; found 2 and 1"):
        classification_report(["a", "b"], ["a"])
    with pytest.raises(DataError, match="nothing to score"):
        classification_report([], [])
    with pytest.raises(ConfigError, match=r"labels \['c'\] occur in the data but not in"):
        classification_report(["a", "b"], ["a", "c"], labels=["a", "b"])
