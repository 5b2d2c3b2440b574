"""Settings of the QA bot service, read from THREEFOLD_QA_* variables at entry points."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from threefold.core.errors import ConfigError

ENV_PREFIX = "THREEFOLD_QA_"
SAMPLE_KB = Path(__file__).resolve().parent / "data" / "store_faq.csv"
SAMPLE_QUERIES = Path(__file__).resolve().parent / "data" / "store_queries.csv"


@dataclass
class QAConfig:
    """Service settings. `threshold`/`ambiguity_margin` None = the values chosen at build time.

    When `bot_dir` holds no bot yet and `kb_path` is set, the app builds one from it at start-up
    (by default from the shipped sample store FAQ, so `threefold serve qa` works out of the box).
    """

    bot_dir: str = "qa-bot"
    kb_path: str | None = str(SAMPLE_KB)
    admin_token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    handoff_webhook: str | None = None
    handoff_timeout_s: float = 3.0
    redis_url: str | None = None
    redis_prefix: str = "threefold:qa:"
    session_ttl_s: int = 1800
    max_message_chars: int = 1000
    max_body_bytes: int = 16_000
    rate_limit_per_minute: int | None = 120
    trusted_proxies: int = 0  # reverse proxies whose X-Forwarded-For is believed
    threshold: float | None = None
    ambiguity_margin: float | None = None
    handoff_after_failures: int = 2
    n_suggestions: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.allowed_origins, str):
            self.allowed_origins = _split(self.allowed_origins)
        self.allowed_origins = tuple(self.allowed_origins)
        positive = {
            "session_ttl_s": self.session_ttl_s,
            "max_message_chars": self.max_message_chars,
            "max_body_bytes": self.max_body_bytes,
            "handoff_after_failures": self.handoff_after_failures,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, found {value}")
        if self.rate_limit_per_minute is not None and self.rate_limit_per_minute < 1:
            raise ConfigError(
                f"rate_limit_per_minute must be >= 1 (or unset to disable), found "
                f"{self.rate_limit_per_minute}"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be within [0, 1], found {self.threshold}")
        if self.ambiguity_margin is not None and not 0.0 <= self.ambiguity_margin < 1.0:
            raise ConfigError(
                f"ambiguity_margin must be within [0, 1), found {self.ambiguity_margin}"
            )
        if self.handoff_timeout_s <= 0:
            raise ConfigError(f"handoff_timeout_s must be > 0, found {self.handoff_timeout_s}")
        if self.n_suggestions < 0:
            raise ConfigError(f"n_suggestions must be >= 0, found {self.n_suggestions}")

    def __repr__(self) -> str:
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "admin_token" and value:
                value = "***"
            shown.append(f"{item.name}={value!r}")
        return f"QAConfig({', '.join(shown)})"

    @classmethod
    def from_env(
        cls, prefix: str = ENV_PREFIX, environ: Mapping[str, str] | None = None
    ) -> QAConfig:
        """Read `<prefix><FIELD>` variables (e.g. THREEFOLD_QA_BOT_DIR); REDIS_URL is unprefixed.

        Unset or empty variables keep the defaults. RATE_LIMIT_PER_MINUTE=0 disables the limit;
        KB_PATH='' disables building at start-up.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for item in fields(cls):
            name = prefix + item.name.upper()
            raw = env.get(name)
            if raw is None or (raw == "" and item.name != "kb_path"):
                continue
            values[item.name] = _parse(item.name, name, raw)
        if "redis_url" not in values and env.get("REDIS_URL"):
            values["redis_url"] = env["REDIS_URL"]
        return cls(**values)  # type: ignore[arg-type]


_INTS = {
    "session_ttl_s",
    "trusted_proxies",
    "max_message_chars",
    "max_body_bytes",
    "handoff_after_failures",
    "n_suggestions",
}
_FLOATS = {"threshold", "ambiguity_margin", "handoff_timeout_s"}


def _parse(field_name: str, env_name: str, raw: str) -> object:
    try:
        if field_name in _INTS:
            return int(raw)
        if field_name in _FLOATS:
            return float(raw)
        if field_name == "rate_limit_per_minute":
            return int(raw) or None
    except ValueError:
        kind = "an integer" if field_name in _INTS or field_name.startswith("rate") else "a number"
        raise ConfigError(f"{env_name} must be {kind}, found {raw!r}") from None
    if field_name == "allowed_origins":
        return _split(raw)
    if field_name == "kb_path":
        return raw or None
    return raw


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())
