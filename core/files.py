"""Small file helpers shared by core and the apps: atomic JSON writes and checked JSON reads."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from threefold.core.errors import ModelError


def write_json_atomic(path: Path, doc: object) -> None:
    """Write `doc` as JSON to a temporary file beside `path`, then os.replace it into place.

    A reader sees the old file or the new one, never half of one.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=1, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, what: str) -> dict:
    """The JSON object in `path`; ModelError naming `what` when unreadable or not an object."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{what} {path} is not readable JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ModelError(f"{what} {path} holds {type(doc).__name__}, expected a JSON object")
    return doc
