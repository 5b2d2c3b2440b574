"""`threefold classifier train|eval|predict` end to end through the root CLI (click runner)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from threefold.apps.cli import cli

SENTENCES = {
    "positive": [
        "profit rose sharply this quarter",
        "sales grew strongly in every region",
        "the company beat expectations again",
        "record revenue and higher margins",
        "shares jumped after strong results",
        "orders increased by a third",
    ],
    "negative": [
        "profit fell sharply this quarter",
        "sales dropped badly in every region",
        "the company missed expectations again",
        "losses widened and margins shrank",
        "shares slumped after weak results",
        "orders decreased by a third",
    ],
}


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def labelled_rows() -> list[list[str]]:
    return [[text, label] for label, texts in SENTENCES.items() for text in texts]


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["classifier", *args], input=stdin)


def assert_clean_error(result: Result, match: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert "Error:" in result.stderr
    assert match in result.stderr


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-data")
    write_rows(folder / "train.csv", ["sentence", "tone"], labelled_rows())
    write_rows(
        folder / "test.csv",
        ["sentence", "tone"],
        [["profit grew strongly", "positive"], ["sales fell badly", "negative"]],
    )
    return folder


@pytest.fixture(scope="module")
def trained(data_dir: Path) -> tuple[Path, dict]:
    """Train once through the CLI (eval split taken from --train) and keep its JSON summary."""
    out = data_dir / "model"
    result = invoke(
        "train",
        "--train",
        str(data_dir / "train.csv"),
        "--out",
        str(out),
        "--text-column",
        "sentence",
        "--label-column",
        "tone",
        "--max-steps",
        "12",
        "--batch-size",
        "8",
        "--learning-rate",
        "2e-4",
        "--eval-fraction",
        "0.25",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert "Writing model shards" not in result.stderr  # --no-progress: no bars at all
    assert "Loading weights" not in result.stderr
    return out, json.loads(result.stdout)


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["predict"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout


def test_train_help_lists_the_contract_options() -> None:
    text = invoke("train", "--help").stdout
    for option in ("--train", "--eval", "--out", "--base", "--epochs", "--text-column"):
        assert option in text
    levers = ("--layer-lr-decay", "--adversarial-epsilon", "--rdrop-alpha", "--label-smoothing")
    levers += ("--checkpoint-average", "--augment-copies")
    assert all(lever in text for lever in levers)


def test_recipe_flags_reach_the_saved_training_config(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "levers"
    result = invoke(
        "train", "--train", str(data_dir / "train.csv"), "--out", str(out),
        "--text-column", "sentence", "--label-column", "tone", "--strategy", "fine-tune",
        "--max-steps", "2", "--eval-fraction", "0", "--no-progress", "--layer-lr-decay", "0.9",
        "--adversarial-epsilon", "0.5", "--rdrop-alpha", "1", "--label-smoothing", "0.1",
        "--random-batches", "--checkpoint-average", "2", "--augment-copies", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "threefold_classifier.json").read_text())["training_config"]
    assert saved["layer_lr_decay"] == 0.9 and saved["adversarial_epsilon"] == 0.5
    assert saved["rdrop_alpha"] == 1.0 and saved["label_smoothing"] == 0.1
    assert saved["group_by_length"] is False  # on by default
    assert saved["checkpoint_average"] == 2 and saved["augment_copies"] == 1
    summary = json.loads(result.stdout)
    assert summary["augmented_copies"] == summary["n_train"] / 2
    assert summary["checkpoint_average"]["reason"]  # 2 steps: one epoch, nothing to average


def test_out_of_range_recipe_flag_fails_cleanly(data_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "train", "--train", str(data_dir / "train.csv"), "--out", str(tmp_path / "m"),
        "--label-smoothing", "1",
    )  # fmt: skip
    assert_clean_error(result, "label_smoothing must be in [0.0, 1.0); found 1.0")


def test_train_with_missing_column_fails_cleanly(data_dir: Path, tmp_path: Path) -> None:
    result = invoke("train", "--train", str(data_dir / "train.csv"), "--out", str(tmp_path / "m"))
    assert_clean_error(result, "found ['sentence', 'tone']")
    assert "--text-column" in result.stderr


def test_train_on_empty_file_fails_cleanly(tmp_path: Path) -> None:
    empty = write_rows(tmp_path / "empty.csv", ["text", "label"], [])
    result = invoke("train", "--train", str(empty), "--out", str(tmp_path / "m"))
    assert_clean_error(result, "has no records")


def test_train_on_a_latin1_jsonl_file_fails_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "latin1.jsonl"
    rows = [{"text": f"café {label}", "label": label} for label in ("positive", "negative")]
    data.write_bytes(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1")
    )
    result = invoke("train", "--train", str(data), "--out", str(tmp_path / "m"))
    assert_clean_error(result, "not UTF-8")
    assert not (tmp_path / "m").exists()


def test_train_with_bad_option_value_fails_cleanly(data_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "train", "--train", str(data_dir / "train.csv"), "--out", str(tmp_path), "--epochs", "0"
    )
    assert_clean_error(result, "epochs must be in (0.0, inf]; found 0")


def test_train_refuses_a_non_empty_out_directory(data_dir: Path) -> None:
    result = invoke("train", "--train", str(data_dir / "train.csv"), "--out", str(data_dir))
    assert_clean_error(result, "pass --overwrite")


def quick_train(data_dir: Path, out: Path, *extra: str) -> Result:
    """The cheapest real training run: the contrastive path, two steps, no eval split."""
    return invoke(
        "train", "--train", str(data_dir / "train.csv"), "--out", str(out),
        "--text-column", "sentence", "--label-column", "tone", "--strategy", "contrastive",
        "--max-steps", "2", "--eval-fraction", "0", "--no-progress", *extra,
    )  # fmt: skip


def test_an_out_under_a_file_fails_before_training(data_dir: Path) -> None:
    result = quick_train(data_dir, data_dir / "train.csv" / "sub")
    assert_clean_error(result, "train.csv/sub cannot be written")
    assert "training path:" not in result.stderr  # refused before any training


def test_a_run_whose_out_was_filled_meanwhile_keeps_its_model_beside_it(
    data_dir: Path, tmp_path: Path, trained: tuple[Path, dict], monkeypatch
) -> None:
    """Two runs into the same new --out: the later one neither overwrites nor claims success."""
    from threefold.core import classifier_training

    out = tmp_path / "model"
    train = classifier_training.train_classifier_from_files

    def other_run_finishes_first(*args, **kwargs):
        model = train(*args, **kwargs)
        shutil.copytree(trained[0], out)
        return model

    monkeypatch.setattr(
        classifier_training, "train_classifier_from_files", other_run_finishes_first
    )
    result = quick_train(data_dir, out)
    assert_clean_error(result, f"--out {out} was filled by another run while this one trained")
    (kept,) = [p for p in tmp_path.iterdir() if p != out]
    assert kept.name.startswith("model.") and f"saved to {kept} instead" in result.stderr
    assert (kept / "threefold_classifier.json").is_file()
    winner = json.loads((out / "threefold_classifier.json").read_text())
    assert winner["version"] == trained[1]["version"]  # the other run's model, untouched


def test_a_model_that_cannot_be_renamed_into_out_is_kept_beside_it(
    data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """A rename that fails for another reason than a filled --out deletes nothing either."""
    from threefold.core import classifier_training

    out = tmp_path / "model"
    train = classifier_training.train_classifier_from_files

    def a_file_lands_at_out(*args, **kwargs):
        model = train(*args, **kwargs)
        out.write_text("a file where the folder should go")
        return model

    monkeypatch.setattr(classifier_training, "train_classifier_from_files", a_file_lands_at_out)
    result = quick_train(data_dir, out, "--overwrite")
    assert_clean_error(result, f"cannot move the trained classifier into --out {out}")
    (kept,) = [p for p in tmp_path.iterdir() if p != out]
    assert kept.name.startswith("model.") and f"saved to {kept} instead" in result.stderr
    assert (kept / "threefold_classifier.json").is_file()


def test_a_symlinked_out_gets_the_model_in_its_real_folder(data_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "disk" / "model"
    real.mkdir(parents=True)
    (real / "old-model.txt").write_text("the previous classifier")
    link = tmp_path / "model"
    link.symlink_to(real)
    result = quick_train(data_dir, link, "--overwrite")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and (real / "threefold_classifier.json").is_file()
    assert not (real / "old-model.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "model"]
    assert [p.name for p in real.parent.iterdir()] == ["model"]


def test_the_current_folder_as_out_is_refused_before_training(
    data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = quick_train(data_dir, Path("."), "--overwrite")
    assert_clean_error(result, "--out . is the current folder or one above it")
    assert "Fix: pass a new folder inside it, such as ./model" in result.stderr
    assert "training path:" not in result.stderr and list(tmp_path.iterdir()) == []


def test_an_interrupted_save_leaves_no_half_model_in_out(
    data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from threefold.core import classifier

    def interrupted(path: Path, doc: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the weights, before the metadata

    monkeypatch.setattr(classifier, "write_json_atomic", interrupted)
    result = quick_train(data_dir, tmp_path / "model")
    assert result.exit_code != 0
    assert list(tmp_path.iterdir()) == []  # no --out, no staging folder


def test_overwrite_replaces_the_old_model_whole(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "old-model.txt").write_text("the previous classifier")
    result = quick_train(data_dir, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "threefold_classifier.json").is_file()
    assert not (out / "old-model.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # old copy and staging removed


def test_epochs_and_patience_are_named_as_unused_on_the_contrastive_path(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In the JSON warnings and as a WARNING log line (the CLI logs warnings to stderr)."""
    result = quick_train(data_dir, tmp_path / "m", "--epochs", "2", "--patience", "5")
    assert result.exit_code == 0, result.output
    note = (
        "epochs=2.0 (--epochs), early_stopping_patience=5 (--patience) not used: the "
        "contrastive path runs its own number of steps"
    )
    assert [w for w in json.loads(result.stdout)["warnings"] if note in w]
    assert [r for r in caplog.records if r.levelname == "WARNING" and note in r.getMessage()]


def test_eval_of_a_missing_model_fails_cleanly(data_dir: Path, tmp_path: Path) -> None:
    data = write_rows(tmp_path / "t.csv", ["text", "label"], [["profit rose", "positive"]])
    result = invoke("eval", "--model", str(tmp_path / "none"), "--data", str(data))
    assert_clean_error(result, "does not exist")


def test_predict_without_texts_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("predict", "--model", str(tmp_path), stdin="")
    assert result.exit_code == 2
    assert "stdin held no text" in result.stderr


@pytest.mark.slow
def test_train_prints_a_summary_and_saves_the_model(trained: tuple[Path, dict]) -> None:
    out, summary = trained
    assert summary["labels"] == ["negative", "positive"]
    assert summary["n_train"] == 8
    assert summary["eval_source"].startswith("0.25 stratified split")
    assert 0.0 <= summary["eval_macro_f1"] <= 1.0
    assert summary["train_seconds"] > 0
    assert summary["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    recorded = json.loads((out / "threefold_classifier.json").read_text(encoding="utf-8"))
    assert summary["int8"] == recorded["metrics"]["int8"]  # the decision as saved, reason too
    assert not summary["int8"]["default_on_cpu"]  # 4 eval rows cannot show a 0.5-point cost
    assert summary["int8"]["eval_size"] == {"label": 4}


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--no-quantize"], ["--quantize"]])
def test_eval_prints_exactly_one_json_report(
    trained: tuple[Path, dict], data_dir: Path, extra: list[str]
) -> None:
    out, summary = trained
    result = invoke(
        "eval",
        "--model",
        str(out),
        "--data",
        str(data_dir / "test.csv"),
        "--text-column",
        "sentence",
        "--label-column",
        "tone",
        *extra,
    )
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1
    report = json.loads(result.stdout)
    assert report["n"] == 2
    assert 0.0 <= report["accuracy"] <= 1.0
    assert 0.0 <= report["macro_f1"] <= 1.0
    assert set(report["per_class"]) == {"negative", "positive"}
    assert set(report["per_class"]["positive"]) == {"precision", "recall", "f1", "support"}
    assert report["confusion"]["labels"] == ["negative", "positive"]
    assert sum(map(sum, report["confusion"]["matrix"])) == 2
    assert report["sentences_per_second"] > 0
    recorded = json.loads((out / "threefold_classifier.json").read_text())["metrics"]["int8"]
    if extra:
        assert report["quantized"] == (extra == ["--quantize"])
    else:  # the decision recorded at training time (int8 when it cost <= 0.5 point), on a CPU
        assert report["quantized"] == (recorded["default_on_cpu"] and report["device"] == "cpu")
    assert report["model_version"] == summary["version"]


@pytest.mark.slow
def test_eval_with_labels_the_model_never_saw_fails_cleanly(
    trained: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = trained
    data = write_rows(tmp_path / "t.csv", ["text", "label"], [["profit rose", "mixed"]])
    result = invoke("eval", "--model", str(out), "--data", str(data))
    assert_clean_error(result, "labels ['mixed'] are not among the classifier's labels")


@pytest.mark.slow
def test_predict_prints_one_json_line_per_text(trained: tuple[Path, dict]) -> None:
    out, _ = trained
    texts = ["profit rose sharply", "sales dropped badly", "x " * 2000]
    result = invoke("predict", "--model", str(out), *texts)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["text"] for line in lines] == texts
    for line in lines:
        assert set(line["probabilities"]) == {"negative", "positive"}
        assert line["label"] == max(line["probabilities"], key=line["probabilities"].get)
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_predict_reads_stdin_and_rejects_empty_text(trained: tuple[Path, dict]) -> None:
    out, _ = trained
    result = invoke("predict", "--model", str(out), stdin="profit rose\n\nsales fell\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2
    assert_clean_error(invoke("predict", "--model", str(out), "ok", " "), "text #1 is empty")


# ------------------------------------------------------------------ a new user's small CSV
NEW_USER_ROWS = {
    "positive": [
        "quarterly profit doubled on strong demand",
        "the retailer raised its full-year outlook",
        "net sales climbed twelve percent",
        "the bank reported record earnings",
        "operating margin improved sharply",
        "the startup won a large government contract",
        "shares rallied after the upbeat forecast",
        "order intake grew faster than expected",
        "the airline returned to profit",
        "revenue beat analyst estimates",
    ],
    "negative": [
        "quarterly profit halved on weak demand",
        "the retailer cut its full-year outlook",
        "net sales slumped twelve percent",
        "the bank reported a heavy loss",
        "operating margin deteriorated sharply",
        "the startup lost its biggest customer",
        "shares plunged after the gloomy forecast",
        "order intake fell short of expectations",
        "the airline swung to a loss",
        "revenue missed analyst estimates",
    ],
    "neutral": [
        "the company is headquartered in espoo",
        "the annual general meeting is on 12 april",
        "the firm employs about 300 people",
        "the report is published in english and finnish",
        "the group operates in eleven countries",
        "the chairman will be elected at the meeting",
        "the factory makes cardboard packaging",
        "the offices are located downtown",
        "the company was founded in 1952",
        "the results will be published in july",
    ],
}
NEW_USER_TEST = [
    ["profit surged and the dividend was raised", "positive"],
    ["the insurer posted strong growth in premiums", "positive"],
    ["earnings rose well above forecasts", "positive"],
    ["the miner warned of a steep drop in profit", "negative"],
    ["sales declined and the loss widened", "negative"],
    ["the chipmaker slashed its guidance", "negative"],
    ["the meeting will be held in helsinki", "neutral"],
    ["the company has offices in three cities", "neutral"],
    ["the board consists of six members", "neutral"],
]


@pytest.mark.slow
def test_a_new_users_30_row_csv_trains_a_model_that_tells_labels_apart(tmp_path: Path) -> None:
    """The README command on 30 rows: the small-data path is chosen, said why, no collapse."""
    rows = [[text, label] for label, texts in NEW_USER_ROWS.items() for text in texts]
    train = write_rows(tmp_path / "mine.csv", ["text", "label"], rows)
    test = write_rows(tmp_path / "test.csv", ["text", "label"], NEW_USER_TEST)
    out = tmp_path / "model"
    result = invoke(
        "train", "--train", str(train), "--out", str(out), "--epochs", "3", "--no-progress"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["strategy"] == "contrastive"
    assert summary["strategy_reason"].startswith("small data: ")
    assert "training stopped: contrastive pass complete" in result.stderr
    (warning,) = summary["warnings"]  # the README's --epochs 3 is named as unused, nothing else
    assert warning.startswith("epochs=3.0 (--epochs) not used: the contrastive path")
    assert summary["train_accuracy"] >= 0.9
    report = json.loads(invoke("eval", "--model", str(out), "--data", str(test)).stdout)
    assert report["accuracy"] >= 0.6, report  # majority class: 0.33
    matrix = report["confusion"]["matrix"]
    predicted_per_label = [sum(column) for column in zip(*matrix, strict=True)]
    assert min(predicted_per_label) > 0, report  # every label is predicted at least once
