"""JSON files written atomically (temporary file, then rename) and read with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

from threefold.core.errors import ModelError


def write_json_atomic(path: Path, doc: object) -> None:
    """Write `doc` as JSON to `path`; readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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
