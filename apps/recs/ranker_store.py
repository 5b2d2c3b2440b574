"""The trained ranker and its folder: `RankerModel.save(path)` / `RankerModel.load(path)`.

A model folder holds the fine-tuned text encoder (`encoder/`), the combiner
(`combiner.json`), the training facts (`ranker.json`), when trained, the sequence ranker
(`sequence/`) and the catalog vectors the build computed (`item_vectors.*`: the API reuses
those whose item text is unchanged instead of embedding the catalog again).

`save` writes the whole folder beside its target and swaps it in by rename, so a reader sees the
old model or the new one, never a mix, and nothing of an earlier build survives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from time import sleep
from typing import Any

import numpy as np

from threefold.apps.recs.candidates import DAY
from threefold.apps.recs.catalog import Item
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.item_vectors import ItemVectors
from threefold.core.errors import ConfigError, ModelError
from threefold.core.files import (
    FolderNotMovedError,
    move_dir_into_place,
    removed_on_error,
    staging_dir,
)

COMBINER_FILE = "combiner.json"
MODEL_FILE = "ranker.json"
ENCODER_DIR = "encoder"
SEQUENCE_DIR = "sequence"
REQUIRED = (ENCODER_DIR, COMBINER_FILE, MODEL_FILE)  # what every model folder holds
LOAD_ATTEMPTS = 3  # reads of a folder that saves keep replacing before `load` gives up
SWAP_WAIT_SECONDS = 0.05  # a read that met a save's swap half-done waits this long to read again


def missing_files(path: Path) -> list[str]:
    """The files of `REQUIRED` that the folder `path` lacks (all of them when it is absent)."""
    return [name for name in REQUIRED if not (path / name).exists()]


def _folder_id(path: Path) -> tuple[int, int] | None:
    """What tells the folder at `path` from the one a `save` swaps in (None: not there)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def check_save_target(path: Path) -> bool:
    """Whether `path` already holds a recs model (False: absent or empty); ConfigError when a
    model cannot be saved there: a non-empty folder that is not a model (saving would delete
    what it holds), a place where no folder can be written (checked by making one beside it),
    or a folder no rename can replace (`.`, a mount point; see `core.files.swap_target`).
    """
    holds_model = _holds_a_model(path)
    _staging_folder(path).rmdir()
    return holds_model


def _holds_a_model(path: Path) -> bool:
    """Whether `path` holds a recs model (False: absent or empty); ConfigError for a non-empty
    folder that is not one (saving would delete what it holds)."""
    if not (path.is_dir() and any(path.iterdir())):
        return False
    if missing := missing_files(path):
        raise ConfigError(
            f"{path} is not empty and not a recs model folder (missing {missing}); saving "
            "a model there would replace what it holds. Fix: choose a new or empty folder"
        )
    return True


def _staging_folder(path: Path) -> Path:
    """A new empty folder beside `path`, in which a model is written before it is swapped in."""
    try:
        return staging_dir(path)
    except OSError as exc:
        raise _unwritable(path, exc) from exc


def _unwritable(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"cannot write the recs model folder {path}: {exc.strerror or exc} ({exc.filename}). "
        "Fix: choose a folder in a writable place, with space left"
    )


@dataclass
class RankerModel:
    """A trained ranker: text encoder (core Embedder) + combiner + training facts + sequence,
    and the catalog vectors its encoder computed at build time."""

    encoder: Any
    combiner: LinearCombiner
    info: dict[str, Any] = field(default_factory=dict)
    sequence: Any = None
    item_vectors: ItemVectors | None = None

    def saved_vectors(self, items: Iterable[Item]) -> dict[str, np.ndarray]:
        """The build's vectors of those `items` whose text is unchanged, by item id."""
        if self.item_vectors is None:
            return {}
        return self.item_vectors.matching(self.encoder.weights_id, items)

    @property
    def trending_window(self) -> float:
        return float(self.info.get("trending_window_days", 14.0)) * DAY

    @property
    def neighbours(self) -> int | None:
        return self.info.get("neighbours")

    def save(self, path: str | Path) -> None:
        """Write the model folder `path` whole, replacing a model there (see the module doc);
        ConfigError for a folder that holds something else or cannot be written, or when the
        finished model cannot be renamed into place (it then says where the model was kept)."""
        path = Path(path)
        _holds_a_model(path)
        staged = _staging_folder(path)  # also says when no folder can be written there
        try:
            with removed_on_error(staged):
                self._write(staged)
            move_dir_into_place(staged, path, replace=True)
        except FolderNotMovedError as exc:
            raise ConfigError(
                f"the recs model could not be renamed into {path} ({exc}). Fix: move it there "
                "yourself, or build again"
            ) from exc
        except OSError as exc:
            raise _unwritable(path, exc) from exc

    def _write(self, folder: Path) -> None:
        self.encoder.save(folder / ENCODER_DIR)
        (folder / COMBINER_FILE).write_text(json.dumps(self.combiner.to_dict(), indent=2))
        (folder / MODEL_FILE).write_text(json.dumps(self.info, indent=2, default=str))
        if self.sequence is not None:
            self.sequence.save(folder / SEQUENCE_DIR)
        if self.item_vectors is not None:
            self.item_vectors.save(folder)

    @classmethod
    def load(cls, path: str | Path, **encoder_kwargs: Any) -> RankerModel:
        """The model in folder `path`, read again when a `save` swapped it meanwhile (the folder
        changed during the read, or was missing for the moment between the two renames)."""
        path = Path(path)
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            folder = _folder_id(path)
            try:
                model = cls._read(path, **encoder_kwargs)
            except (ModelError, OSError, json.JSONDecodeError):
                swapping = folder is None or _folder_id(path) != folder
                if not swapping or attempt == LOAD_ATTEMPTS:
                    raise
                sleep(SWAP_WAIT_SECONDS)
                continue
            if _folder_id(path) == folder:
                return model
        raise ModelError(
            f"{path} was replaced by another save each of the {LOAD_ATTEMPTS} times it was read. "
            "Fix: load it again once the build writing it has finished"
        )

    @classmethod
    def _read(cls, path: Path, **encoder_kwargs: Any) -> RankerModel:
        from threefold.core.embedder import Embedder

        if missing := missing_files(path):
            raise ModelError(
                f"{path} is not a recommendation model folder: missing {missing}. "
                "Fix: build one with `threefold recs build --items ... --events ... --out DIR`."
            )
        combiner = LinearCombiner.from_dict(json.loads((path / COMBINER_FILE).read_text()))
        info = json.loads((path / MODEL_FILE).read_text())
        encoder = Embedder.from_dir(path / ENCODER_DIR, **encoder_kwargs)
        sequence = None
        if (path / SEQUENCE_DIR).exists():
            from threefold.apps.recs.sequence_ensemble import load_sequence_ranker

            sequence = load_sequence_ranker(path / SEQUENCE_DIR)
        return cls(
            encoder=encoder,
            combiner=combiner,
            info=info,
            sequence=sequence,
            item_vectors=ItemVectors.load(path),
        )
