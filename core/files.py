"""JSON files written atomically (temporary file, then rename) and read with clear errors."""

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
    """The JSON object in `path`; ModelError says to save `what` (e.g. "the index") again."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not readable JSON ({exc}). Fix: save {what} again.") from exc
    if not isinstance(doc, dict):
        raise ModelError(
            f"{path} holds a JSON {type(doc).__name__}, expected an object. Fix: save {what} again."
        )
    return doc
