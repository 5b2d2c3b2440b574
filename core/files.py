"""Files and folders written atomically (a temporary copy, then a rename); JSON read back."""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
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


def staging_dir(target: Path) -> Path:
    """A new empty hidden folder beside `target` (same filesystem, so it renames into place),
    with the usual permissions (not `tempfile.mkdtemp`'s owner-only ones: a server running as
    another user must read the folder once it is in place). OSError when none can be made."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(8):
        staged = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
        try:
            staged.mkdir()
            return staged
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free staging folder name", str(target.parent))


def move_dir_into_place(new: Path, target: Path, *, replace: bool) -> None:
    """Rename folder `new` (from `staging_dir(target)`) to `target` in one step.

    An absent or empty `target` is taken. A non-empty one raises FileExistsError unless
    `replace`: then it is renamed aside, `new` renamed in, and the old folder removed only
    after that succeeded (renamed back if it failed). Readers never see half a folder.
    """
    try:
        os.rename(new, target)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        if not replace:
            raise FileExistsError(exc.errno, f"{target} is not empty", str(target)) from exc
    aside = new.with_name(f"{new.name}.old")
    os.rename(target, aside)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
