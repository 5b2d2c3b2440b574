from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from threefold.core.errors import ConfigError
from threefold.core.settings import (
    Secret,
    coerce_fields,
    load_settings,
    public_dict,
    reveal,
    safe_url,
)


@dataclass(frozen=True)
class Example:
    name: str = "bot"
    count: int = 3
    ratio: float = 0.5
    enabled: bool = True
    folder: Path = Path("data")
    optional_path: str | None = "x.csv"
    limit: int | None = 10
    origins: tuple[str, ...] = ()
    topics: list[str] = field(default_factory=list)
    token: Secret | None = None
    redis_url: str | None = field(default=None, metadata={"env": "REDIS_URL"})


def test_converts_by_annotation() -> None:
    env = {
        "APP_NAME": "shop",
        "APP_COUNT": "7",
        "APP_RATIO": "0.25",
        "APP_ENABLED": "off",
        "APP_FOLDER": "/tmp/f",
        "APP_LIMIT": "5",
        "APP_ORIGINS": "http://a, http://b,",
        "APP_TOPICS": "x,y",
        "APP_TOKEN": "s3cret",
    }
    settings = load_settings(Example, "APP_", env)
    assert settings == Example(
        name="shop",
        count=7,
        ratio=0.25,
        enabled=False,
        folder=Path("/tmp/f"),
        limit=5,
        origins=("http://a", "http://b"),
        topics=["x", "y"],
        token=Secret("s3cret"),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.count = 1  # type: ignore[misc]


def test_empty_means_none_for_optional_and_default_otherwise() -> None:
    settings = load_settings(Example, "APP_", {"APP_OPTIONAL_PATH": "", "APP_COUNT": " "})
    assert settings.optional_path is None
    assert settings.count == 3


def test_unprefixed_fallback_and_prefixed_wins() -> None:
    assert load_settings(Example, "APP_", {"REDIS_URL": "redis://h"}).redis_url == "redis://h"
    env = {"REDIS_URL": "redis://h", "APP_REDIS_URL": "redis://mine"}
    assert load_settings(Example, "APP_", env).redis_url == "redis://mine"


def test_overrides_win_and_none_means_unset() -> None:
    settings = load_settings(Example, "APP_", {"APP_COUNT": "7"}, count=9, name=None, token="t")
    assert settings.count == 9
    assert settings.name == "bot"
    assert reveal(settings.token) == "t"


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("APP_COUNT", "many", "APP_COUNT must be an integer, found 'many'"),
        ("APP_RATIO", "half", "APP_RATIO must be a finite number, found 'half'"),
        ("APP_ENABLED", "maybe", "APP_ENABLED must be true or false, found 'maybe'"),
        ("APP_RATIO", "nan", "APP_RATIO must be a finite number, found 'nan'"),
        ("APP_RATIO", "-NaN", "APP_RATIO must be a finite number, found '-NaN'"),
        ("APP_RATIO", "inf", "APP_RATIO must be a finite number, found 'inf'"),
    ],
)
def test_bad_values_name_the_variable(variable: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(Example, "APP_", {variable: raw})


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['colour'\]"):
        load_settings(Example, "APP_", {}, colour="red")


def test_secrets_never_print() -> None:
    settings = load_settings(Example, "APP_", {"APP_TOKEN": "s3cret"})
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.token)
    assert "s3cret" not in f"{settings.token}"
    assert public_dict(settings)["token"] == "***"


def test_safe_url_masks_passwords() -> None:
    assert safe_url("redis://user:pw@host:6379/0") == "redis://user:***@host:6379/0"
    assert safe_url("redis://:pw@host:6379") == "redis://***@host:6379"
    assert safe_url("redis://host:6379") == "redis://host:6379"
    assert safe_url(None) == ""
    settings = load_settings(Example, "APP_", {"REDIS_URL": "rediss://u:pw@h:1"})
    assert public_dict(settings)["redis_url"] == "rediss://u:***@h:1"


def test_safe_url_masks_query_passwords_and_survives_malformed_urls() -> None:
    # redis-py reads ?password=... as the password, so it must not reach the logs either
    assert safe_url("redis://h:6379/0?password=pw&db=2") == "redis://h:6379/0?password=***&db=2"
    assert safe_url("redis://h/0?sasl_password=pw;token=t") == (
        "redis://h/0?sasl_password=***;token=***"
    )
    assert safe_url("redis://h/0?db=1") == "redis://h/0?db=1"
    shown = safe_url("redis://u:pw@[oops/0")  # urlsplit raises ValueError on this
    assert "pw" not in shown
    assert shown.startswith("redis://***")
    settings = load_settings(Example, "APP_", {"REDIS_URL": "redis://h/0?password=pw"})
    assert public_dict(settings)["redis_url"] == "redis://h/0?password=***"


@dataclass(frozen=True)
class Coerced:
    token: Secret | None = None
    folder: Path | None = None
    origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        coerce_fields(self)


def test_constructor_values_take_their_annotated_types() -> None:
    settings = Coerced(token="t", folder="data", origins=["a"])  # type: ignore[arg-type]
    assert settings == Coerced(token=Secret("t"), folder=Path("data"), origins=("a",))
    assert "'t'" not in repr(settings)
