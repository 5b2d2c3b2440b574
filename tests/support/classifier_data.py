"""Tiny labelled headlines and CSV helpers shared by the classifier tests."""

from __future__ import annotations

import csv
from pathlib import Path

from threefold.core.training_config import TrainingConfig

POSITIVE = [
    "profit rose sharply this quarter",
    "sales grew strongly in every region",
    "the company beat expectations again",
    "record revenue and higher margins",
    "shares jumped after strong results",
    "the dividend was raised by ten percent",
    "orders increased by a third",
]
NEGATIVE = [
    "profit fell sharply this quarter",
    "sales dropped badly in every region",
    "the company missed expectations again",
    "losses widened and margins shrank",
    "shares slumped after weak results",
    "the dividend was cut by ten percent",
    "orders decreased by a third",
]
NEUTRAL = [
    "the annual meeting is held in march",
    "the company is based in helsinki",
    "the board has seven members",
    "the report will be published on tuesday",
    "the firm makes paper and packaging",
    "the office moved to a new address",
]
TEXTS = POSITIVE + NEGATIVE + NEUTRAL
LABELS = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE) + ["neutral"] * len(NEUTRAL)
# TINY fine-tunes the transformers sequence classifier (tests/core/test_small_data.py covers the
# contrastive path that `auto` picks for data this small).
TINY = TrainingConfig(
    max_steps=16,
    batch_size=8,
    learning_rate=2e-4,
    warmup_ratio=0.0,
    output_progress=False,
    strategy="fine-tune",
)


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def rows(texts: list[str], labels: list[str]) -> list[dict[str, str]]:
    return [{"text": t, "label": y} for t, y in zip(texts, labels, strict=True)]
