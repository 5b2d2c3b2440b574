"""TrainingConfig: validation names the bad value; it round-trips through a dict."""

from __future__ import annotations

import pytest

from threefold.core.errors import ConfigError
from threefold.core.training_config import TrainingConfig


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, r"epochs must be in \(0\.0, inf\]; found 0"),
        ({"learning_rate": -1e-5}, r"learning_rate must be .*found -1e-05"),
        ({"batch_size": 0}, r"batch_size must be >= 1; found 0"),
        ({"batch_size": 2.5}, r"batch_size must be an integer; found 2\.5"),
        ({"eval_fraction": 1.0}, r"eval_fraction must be in \[0\.0, 1\.0\); found 1\.0"),
        ({"max_steps": 0}, r"max_steps must be -1 .*found 0"),
        ({"max_length": 4}, r"max_length must be >= 8; found 4"),
        ({"epochs": float("nan")}, r"epochs must be a finite number; found nan"),
        ({"text_column": " "}, r"text_column must be a non-empty column name; found ' '"),
        ({"label_column": "text"}, r"both 'text'"),
    ],
)
def test_training_config_names_the_bad_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainingConfig(**kwargs)


def test_training_config_round_trips_through_dict() -> None:
    config = TrainingConfig(epochs=2.5, text_column="sentence")
    assert TrainingConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"unknown training option\(s\) \['epoch'\]"):
        TrainingConfig.from_dict({"epoch": 3})
