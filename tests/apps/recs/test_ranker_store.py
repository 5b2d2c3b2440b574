"""The ranker's model folder (the save/load round trip runs in test_ranker_training.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from threefold.apps.recs import ranker_store
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.ranker_store import SEQUENCE_DIR, RankerModel
from threefold.core.errors import ConfigError, ModelError


def test_loading_a_folder_that_is_not_a_model_says_how_to_build_one(tmp_path):
    with pytest.raises(ModelError, match="threefold recs build"):
        RankerModel.load(tmp_path)


class _InterruptedEncoder:
    """An encoder whose save is cut short half-way (Ctrl-C while the weights are written)."""

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "model.safetensors").write_bytes(b"half of the new weights")
        raise KeyboardInterrupt


def _saved_model(embedder, path: Path, build: str) -> RankerModel:
    model = RankerModel(encoder=embedder, combiner=LinearCombiner(), info={"build": build})
    model.save(path)
    return model


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_save_interrupted_half_way_leaves_the_old_model_whole(embedder, tmp_path):
    _saved_model(embedder, tmp_path / "m", "old")
    interrupted = RankerModel(
        encoder=_InterruptedEncoder(), combiner=LinearCombiner(), info={"build": "new"}
    )
    with pytest.raises(KeyboardInterrupt):
        interrupted.save(tmp_path / "m")
    loaded = RankerModel.load(tmp_path / "m")
    assert loaded.info == {"build": "old"}
    assert loaded.encoder.encode(["kettle"]).shape == (1, embedder.dimension)
    assert _leftovers(tmp_path) == []  # no half-written folder stays beside it


def test_saving_over_a_model_replaces_it_whole_with_nothing_stale_left(embedder, tmp_path):
    old = tmp_path / "m"
    _saved_model(embedder, old, "old")
    (old / SEQUENCE_DIR).mkdir()  # an earlier build trained a sequence ranker; this one does not
    (old / SEQUENCE_DIR / "sequence.json").write_text("{}")
    _saved_model(embedder, old, "new")
    assert not (old / SEQUENCE_DIR).exists()
    assert RankerModel.load(old).info == {"build": "new"} and RankerModel.load(old).sequence is None
    assert _leftovers(tmp_path) == []
    (tmp_path / "plain").mkdir()  # readable by whoever could read a folder made by hand
    assert old.stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_saving_refuses_a_folder_that_holds_something_else(embedder, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"notes is not empty and not a recs model folder"):
        _saved_model(embedder, notes, "new")
    assert [p.name for p in notes.iterdir()] == ["todo.txt"]


def test_saving_where_no_folder_can_be_made_names_the_path(embedder, tmp_path):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    target = tmp_path / "file.txt" / "m"
    with pytest.raises(ConfigError, match=f"cannot write the recs model folder {target}"):
        _saved_model(embedder, target, "new")


def test_a_load_during_a_save_returns_the_new_model_not_a_mix(embedder, tmp_path, monkeypatch):
    path = tmp_path / "m"
    _saved_model(embedder, path, "old")
    new = RankerModel(
        encoder=embedder, combiner=LinearCombiner(weights={"text": 2.0}), info={"build": "new"}
    )
    read_combiner = LinearCombiner.from_dict

    def swap_while_reading(data):  # the new build lands after the old combiner was read
        if not swapped:
            swapped.append(new.save(path))
        return read_combiner(data)

    swapped: list[None] = []
    monkeypatch.setattr(LinearCombiner, "from_dict", staticmethod(swap_while_reading))
    loaded = RankerModel.load(path)
    assert swapped and loaded.info == {"build": "new"}
    assert loaded.combiner.weights == {"text": 2.0}


def test_a_load_between_the_two_renames_of_a_save_reads_again(embedder, tmp_path, monkeypatch):
    """The folder is missing for a moment while a save swaps it in: load waits and reads again."""
    path = tmp_path / "m"
    _saved_model(embedder, path, "old")
    aside = tmp_path / ".m.old-swap"
    path.rename(aside)  # a save has moved the old model aside; the new one is not in yet
    waits: list[float] = []

    def new_model_lands(seconds: float) -> None:
        waits.append(seconds)
        _saved_model(embedder, tmp_path / "staged", "new")
        (tmp_path / "staged").rename(path)

    monkeypatch.setattr(ranker_store, "sleep", new_model_lands)
    assert RankerModel.load(path).info == {"build": "new"} and len(waits) == 1


def test_a_load_whose_folder_is_swapped_out_mid_read_reads_again(embedder, tmp_path, monkeypatch):
    path = tmp_path / "m"
    _saved_model(embedder, path, "old")
    read_combiner = LinearCombiner.from_dict
    aside = tmp_path / ".m.old-swap"

    def old_moved_aside_while_reading(data):  # the encoder read that follows finds no folder
        if not aside.exists():
            path.rename(aside)
        return read_combiner(data)

    def new_model_lands(seconds: float) -> None:
        _saved_model(embedder, tmp_path / "staged", "new")
        (tmp_path / "staged").rename(path)

    monkeypatch.setattr(LinearCombiner, "from_dict", staticmethod(old_moved_aside_while_reading))
    monkeypatch.setattr(ranker_store, "sleep", new_model_lands)
    assert RankerModel.load(path).info == {"build": "new"}


def test_a_load_of_a_folder_that_stays_missing_gives_up_after_the_attempts(tmp_path, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(ranker_store, "sleep", waits.append)
    with pytest.raises(ModelError, match="missing"):
        RankerModel.load(tmp_path / "never-built")
    assert len(waits) == ranker_store.LOAD_ATTEMPTS - 1


def test_saving_into_a_symlink_fills_its_real_folder_and_keeps_the_link(embedder, tmp_path):
    real = tmp_path / "disk" / "m"
    _saved_model(embedder, real, "old")
    link = tmp_path / "m"
    link.symlink_to(real)
    _saved_model(embedder, link, "new")
    assert link.is_symlink() and RankerModel.load(link).info == {"build": "new"}
    assert _leftovers(tmp_path) == [] and _leftovers(real.parent) == []


class _TargetTakenEncoder:
    """Saves the real encoder, then a file appears where the model folder is to go."""

    def __init__(self, embedder, target: Path) -> None:
        self.embedder, self.target = embedder, target

    def save(self, path: Path) -> None:
        self.embedder.save(path)
        self.target.write_text("not a folder")


def test_a_finished_model_that_cannot_be_renamed_into_place_is_kept_beside_it(embedder, tmp_path):
    target = tmp_path / "m"
    model = RankerModel(
        encoder=_TargetTakenEncoder(embedder, target),
        combiner=LinearCombiner(),
        info={"build": "new"},
    )
    with pytest.raises(ConfigError, match=r"could not be renamed into .*m \(.*kept at") as caught:
        model.save(target)
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("m.")]
    assert str(kept) in str(caught.value) and _leftovers(tmp_path) == []
    assert RankerModel.load(kept).info == {"build": "new"}


def test_saving_into_the_current_folder_is_refused_before_writing(embedder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"\. is the current folder.*such as \./model"):
        _saved_model(embedder, Path("."), "new")
    assert list(tmp_path.iterdir()) == []
