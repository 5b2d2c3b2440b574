"""Helpers shared by every `threefold` command group: clean errors and JSON results."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click


def clean_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run offline, and turn a ThreefoldError into a one-line `Error: ...` with exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threefold.core.base_model import configure_offline
        from threefold.core.errors import ThreefoldError

        configure_offline()
        try:
            return command(*args, **kwargs)
        except ThreefoldError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def emit_json(value: object) -> None:
    """Print one result as a JSON line on stdout (logs and progress go to stderr)."""
    click.echo(json.dumps(value, ensure_ascii=False))
