"""Files and folders written atomically (a temporary copy, then a rename); JSON read back.

Everything written here ends up with the permissions the umask gives a plain `open`/`mkdir`
(usually rw-r--r-- and rwxr-xr-x), not the owner-only ones of temporary files: a server
running as another user (another container's uid) must read the models it serves.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from threefold.core.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)


def write_json_atomic(path: Path, doc: object) -> None:
    """Write `doc` as JSON to a temporary file beside `path`, then os.replace it into place.

    A reader sees the old file or the new one, never half of one.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's file is owner-only
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=1, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it where Linux's /proc shows it (changing it,
    even for an instant, would apply to files other threads create meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: the only portable way to read it
    os.umask(mask)
    return mask


def share_as_umask_allows(folder: Path) -> None:
    """Give `folder` and everything under it the permissions a plain `mkdir`/`open` gets under
    the umask (rwxr-xr-x and rw-r--r-- under 022; executables keep their x bits).

    Libraries save owner-only files (safetensors, tempfile), which a server running as another
    user could not load. Symlinks are left alone. A file that cannot be changed is logged and
    skipped: the model still works for the user that wrote it.
    """
    mask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        try:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                continue
            executable = stat.S_ISDIR(info.st_mode) or info.st_mode & 0o111
            mode = (0o777 if executable else 0o666) & ~mask
            if stat.S_IMODE(info.st_mode) != mode:
                os.chmod(path, mode)
        except OSError as exc:
            logger.warning(
                "cannot give %s the umask's permissions (%s); other users may not read it",
                path,
                exc.strerror or exc,
            )


def permission_problem(path: Path, action: str = "read") -> str:
    """A message for a PermissionError on `path`: what its permissions are, and the fix."""
    try:
        info = path.stat()
        mode, owner = stat.filemode(info.st_mode), f"uid {info.st_uid}, gid {info.st_gid}"
        found = f"it is {mode} owned by {owner}"
    except OSError:
        found = "a folder above it cannot be searched by this user"
    return (
        f"cannot {action} {path}: permission denied ({found}; this process runs as uid "
        f"{os.geteuid()}, gid {os.getegid()}). Fix: give this user access, e.g. "
        f"`chmod a+r {path}` and `chmod a+x` on the folders above it, or run as the user that "
        "wrote it"
    )


def read_json(path: Path, what: str) -> dict:
    """The JSON object in `path`; ModelError says to save `what` (e.g. "the index") again."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except PermissionError as exc:
        raise ModelError(permission_problem(path)) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not readable JSON ({exc}). Fix: save {what} again.") from exc
    if not isinstance(doc, dict):
        raise ModelError(
            f"{path} holds a JSON {type(doc).__name__}, expected an object. Fix: save {what} again."
        )
    return doc


class FolderNotMovedError(OSError):
    """`move_dir_into_place` could not put the new folder at its target; nothing was deleted.

    `reason`: the failed rename's OSError (its errno is EEXIST or ENOTEMPTY when the target was
    filled by someone else); `kept`: where the new folder is now (a visible `<target>.<token>`
    beside the target, or where it was staged when even that rename failed); `old_kept`: where
    the folder the target held is, when it was renamed aside and could not be put back.
    """

    def __init__(self, reason: OSError, target: Path, kept: Path, old_kept: Path | None) -> None:
        where = f"the new folder is kept at {kept}"
        if old_kept is not None:
            where += f", and the folder {target} held before is at {old_kept}"
        super().__init__(reason.errno, f"{reason.strerror or reason} ({target}); {where}")
        self.reason, self.target, self.kept, self.old_kept = reason, target, kept, old_kept

    def __str__(self) -> str:
        return str(self.strerror)

    @property
    def target_taken(self) -> bool:
        """Whether the target held another folder (filled meanwhile, or not to be replaced)."""
        return self.errno in (errno.EEXIST, errno.ENOTEMPTY)


def swap_target(path: Path) -> Path:
    """The folder that a folder staged for `path` is renamed to: `path` with symlinks resolved
    (a link keeps pointing at its real folder, which receives the new one).

    ConfigError, before anything is written, for a folder no rename can replace: a mount point,
    or the current folder or one above it (`.`, `..`): the fix is a new folder inside it.
    """
    real = Path(os.path.realpath(path))
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current folder was removed: nothing to protect
        cwd = None
    if os.path.ismount(real):
        why = "a mount point, which cannot be renamed"
    elif cwd is not None and (real == cwd or real in cwd.parents):
        why = "the current folder or one above it, which cannot be renamed from inside it"
    else:
        return real
    raise ConfigError(
        f"{path} is {why}; the model folder is written beside it and renamed into place whole. "
        f"Fix: pass a new folder inside it, such as {os.path.join(path, 'model')}"
    )


def staging_dir(target: Path) -> Path:
    """A new empty hidden folder beside `swap_target(target)` (same filesystem, so it renames
    into place), with the usual permissions (not `tempfile.mkdtemp`'s owner-only ones: a server
    running as another user must read the folder once it is in place; `move_dir_into_place`
    and the registry's publish give its files those permissions too). OSError when none can be
    made; ConfigError (from `swap_target`) for a target that cannot be replaced."""
    target = swap_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(8):
        staged = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
        try:
            staged.mkdir()
            return staged
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free staging folder name", str(target.parent))


@contextmanager
def removed_on_error(folder: Path) -> Iterator[Path]:
    """Remove `folder` (an unfinished model) when the block raises, Ctrl-C included."""
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def move_dir_into_place(new: Path, target: Path, *, replace: bool) -> None:
    """Rename folder `new` (staged beside `swap_target(target)`) to that target in one step.

    An absent or empty target is taken. A non-empty one is kept unless `replace`: then it is
    renamed aside, `new` renamed in, and the old folder removed only after that succeeded (put
    back when it failed). Readers never see half a folder. Any failed rename raises
    FolderNotMovedError and deletes nothing: it says where the new folder and, when it could
    not be put back, the old one are. The folder's files get the umask's permissions first
    (`share_as_umask_allows`).
    """
    target = swap_target(target)
    share_as_umask_allows(new)
    try:
        os.rename(new, target)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not replace:
            raise _not_moved(exc, new, target, None) from exc
    aside = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    try:
        os.rename(target, aside)
    except OSError as exc:
        raise _not_moved(exc, new, target, None) from exc
    try:
        os.rename(new, target)
    except BaseException as exc:
        try:
            os.rename(aside, target)
            old_kept = None
        except OSError:  # another run filled the target meanwhile: keep the old one in sight
            old_kept = _visible(aside, target, "old-")
        if isinstance(exc, OSError):
            raise _not_moved(exc, new, target, old_kept) from exc
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _not_moved(
    reason: OSError, new: Path, target: Path, old_kept: Path | None
) -> FolderNotMovedError:
    return FolderNotMovedError(reason, target, _visible(new, target, ""), old_kept)


def _visible(folder: Path, target: Path, tag: str) -> Path:
    """Rename `folder` to a visible `<target>.<tag><token>` beside `target`; where it is now."""
    kept = target.with_name(f"{target.name}.{tag}{secrets.token_hex(4)}")
    try:
        os.rename(folder, kept)
    except OSError:
        return folder
    return kept
