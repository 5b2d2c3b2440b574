"""The project's exception hierarchy: one base, a few specific subclasses."""

from __future__ import annotations


class ThreefoldError(Exception):
    """Base class of every error threefold raises on purpose."""


class ConfigError(ThreefoldError, ValueError):
    """A setting or argument has a value threefold cannot use."""


class DataError(ThreefoldError, ValueError):
    """An input file or record is malformed; the message names file, line and column."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: str | int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = ", ".join(
            part
            for part in (
                f"file {path}" if path else "",
                f"line {line}" if line is not None else "",
                f"column {column}" if column is not None else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class ModelError(ThreefoldError):
    """A model directory or hub id is missing, incomplete or corrupt."""


class ServiceError(ThreefoldError):
    """An external or embedded service (Redis, Kafka) could not be started or reached."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
