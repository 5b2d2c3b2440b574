from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from threefold.apps.alerts.cli import alerts
from threefold.apps.alerts.config import DATA_DIR
from threefold.core.classifier import TextClassifier


def test_run_without_kafka_and_redis_says_what_to_set(monkeypatch):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    result = CliRunner().invoke(alerts, ["run", "--no-create-topics"])
    assert result.exit_code == 1
    assert "set KAFKA_BOOTSTRAP_SERVERS and REDIS_URL" in result.output


@pytest.mark.slow
def test_train_on_small_data_writes_one_model_trained_on_the_contrastive_path(tmp_path):
    from threefold.core.multitask import MultiTaskClassifier

    # fmt: off
    args = ["train", "--out", str(tmp_path / "joint"), "--max-steps", "2", "--eval-fraction",
            "0", "--batch-size", "8", "--max-length", "24", "--no-progress"]
    # fmt: on
    result = CliRunner().invoke(alerts, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["mode"] == "multitask"  # one forward pass per headline, small data or not
    assert summary["mode_reason"].startswith("one multi-task model")
    assert summary["strategy"] == "contrastive"  # the shipped sample is small data
    assert "the topic and sentiment data takes the contrastive path" in summary["strategy_reason"]
    model = MultiTaskClassifier.load(tmp_path / "joint")
    assert model.tasks["sentiment"] == ["negative", "neutral", "positive"]
    assert model.tasks["topic"] == ["earnings", "legal", "macro", "mergers", "personnel", "product"]
    two = [*args[:2], str(tmp_path / "two"), *args[3:], "--separate"]
    separate = CliRunner().invoke(alerts, two)
    assert separate.exit_code == 0, separate.output
    assert TextClassifier.load(tmp_path / "two" / "sentiment").labels == model.tasks["sentiment"]
    assert TextClassifier.load(tmp_path / "two" / "topic").labels == model.tasks["topic"]


@pytest.mark.slow
def test_multitask_train_learns_each_head_from_its_own_file(tmp_path):
    from threefold.core.multitask import MultiTaskClassifier

    rows = list(csv.DictReader((DATA_DIR / "headlines_sample.csv").open(encoding="utf-8")))
    half = len(rows) // 2
    for name, column, part in (("topics", "topic", rows[:half]), ("moods", "sentiment", rows)):
        with (tmp_path / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", column])
            writer.writerows([r["text"], r[column]] for r in part)
    # fmt: off
    args = ["train", "--multitask", "--topic-data", str(tmp_path / "topics.csv"),
            "--sentiment-data", str(tmp_path / "moods.csv"), "--out", str(tmp_path / "joint"),
            "--max-steps", "2", "--eval-fraction", "0", "--batch-size", "8",
            "--max-length", "24", "--no-progress"]
    # fmt: on
    result = CliRunner().invoke(alerts, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["n_train_per_task"] == {"topic": half, "sentiment": len(rows)}
    model = MultiTaskClassifier.load(tmp_path / "joint")
    assert model.tasks["sentiment"] == ["negative", "neutral", "positive"]
    assert set(model.tasks["topic"]) == {r["topic"] for r in rows[:half]}


@pytest.mark.slow
def test_train_fine_tunes_one_multitask_model_when_both_tasks_have_enough_data(tmp_path):
    from threefold.core.multitask import MultiTaskClassifier

    rows = list(csv.DictReader((DATA_DIR / "headlines_sample.csv").open(encoding="utf-8")))
    data = tmp_path / "headlines.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "topic", "sentiment"])
        for i in range(800):  # >= 128 per label on average for both tasks (6 topics)
            row = rows[i % len(rows)]
            writer.writerow([f"{row['text']} ({i})", row["topic"], row["sentiment"]])
    # fmt: off
    args = ["train", "--data", str(data), "--out", str(tmp_path / "joint"), "--max-steps", "2",
            "--eval-fraction", "0", "--batch-size", "8", "--max-length", "24", "--no-progress"]
    # fmt: on
    result = CliRunner().invoke(alerts, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["mode"] == "multitask"
    assert summary["mode_reason"].startswith("one multi-task model")
    assert summary["strategy"] == "fine-tune"
    assert set(MultiTaskClassifier.load(tmp_path / "joint").tasks) == {"topic", "sentiment"}
    separate = CliRunner().invoke(
        alerts, [*args[:4], str(tmp_path / "two"), "--separate", *args[5:]]
    )
    assert separate.exit_code == 0, separate.output
    assert json.loads(separate.stdout.strip().splitlines()[-1])["mode_reason"] == (
        "--separate was given"
    )
    assert (tmp_path / "two" / "topic").is_dir() and (tmp_path / "two" / "sentiment").is_dir()


@pytest.mark.slow
def test_simulate_runs_the_scenario_in_memory(model_dirs):
    # fmt: off
    args = ["simulate", str(DATA_DIR / "scenario_surge.jsonl"),
            "--topic-model", str(model_dirs["topic"]),
            "--sentiment-model", str(model_dirs["sentiment"])]
    # fmt: on
    result = CliRunner().invoke(alerts, args)
    assert result.exit_code == 0, result.output
    assert "160 messages, 0 invalid" in result.output
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            assert json.loads(line)["alert_id"].startswith("a-")


@pytest.mark.slow
def test_train_publishes_into_a_registry_with_metadata(tmp_path):
    from threefold.core.multitask import MultiTaskClassifier
    from threefold.core.registry import ModelEntry

    # fmt: off
    args = ["train", "--registry", str(tmp_path), "--max-steps", "2", "--eval-fraction", "0",
            "--batch-size", "8", "--max-length", "24", "--no-progress"]
    # fmt: on
    result = CliRunner().invoke(alerts, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["registry_version"] == "v1"
    joint = ModelEntry(tmp_path / "alerts-multitask")
    info = joint.info("v1")
    assert info["status"] == "current" and info["created_by"]
    assert len(info["data_fingerprint"]) == 16 and info["app"] == "alerts"
    sentiment = MultiTaskClassifier.load(joint.current_dir()).tasks["sentiment"]
    assert sentiment == ["negative", "neutral", "positive"]
    result = CliRunner().invoke(alerts, [*args, "--separate"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["sentiment"]["registry_version"] == "v1"
    entry = ModelEntry(tmp_path / "alerts-sentiment")
    assert entry.info("v1")["status"] == "current"
    assert TextClassifier.load(entry.current_dir()).labels == sentiment


def test_retrain_needs_a_registry_entry_and_redis(tmp_path, monkeypatch):
    from threefold.apps.cli import cli

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("THREEFOLD_MODELS_DIR", raising=False)
    plain = CliRunner().invoke(cli, ["retrain", "alerts", "--sentiment-model", str(tmp_path)])
    assert plain.exit_code == 1
    assert "is not one" in plain.output and "--registry ROOT" in plain.output
    entry = ["retrain", "alerts", "--registry", str(tmp_path)]
    (tmp_path / "alerts-sentiment" / "versions").mkdir(parents=True)
    no_redis = CliRunner().invoke(cli, entry)
    assert no_redis.exit_code == 1 and "set REDIS_URL" in no_redis.output


def _fake_bot_entry(path):
    from threefold.core.registry import ModelEntry

    entry = ModelEntry(path)
    entry.publish(lambda folder, _v: (folder / "bot.json").write_text("{}", encoding="utf-8"))
    return entry


def test_train_refuses_to_publish_into_another_apps_registry_entry(tmp_path):
    bot = _fake_bot_entry(tmp_path / "bot")
    # fmt: off
    args = ["train", "--out", str(bot.path), "--max-steps", "1", "--eval-fraction", "0",
            "--batch-size", "8", "--max-length", "16", "--no-progress"]
    # fmt: on
    result = CliRunner().invoke(alerts, args)
    assert result.exit_code == 1, result.output
    assert "is not an alerts classifier" in result.output and "Traceback" not in result.output
    assert bot.versions() == ["v1"] and bot.current_version() == "v1"  # the bot still serves


def test_separate_train_checks_both_files_before_writing_either_model(tmp_path):
    moods = tmp_path / "moods.csv"
    moods.write_text("text,sentiment\nshares fell,\n", encoding="utf-8")  # a blank label
    # fmt: off
    args = ["train", "--separate", "--sentiment-data", str(moods), "--out", str(tmp_path / "m"),
            "--max-steps", "1", "--eval-fraction", "0", "--batch-size", "8", "--max-length",
            "16", "--no-progress"]
    # fmt: on
    result = CliRunner().invoke(alerts, args)
    assert result.exit_code == 1, result.output
    assert "expected a label in 'sentiment'" in result.output
    assert not (tmp_path / "m").exists()  # no topic model left without its sentiment twin


@pytest.mark.parametrize("mode", ["--separate", "--multitask"])
def test_train_checks_every_task_has_two_labels_before_training_either(tmp_path, mode):
    """Before, --separate trained and wrote the topic model, then failed on the sentiment labels
    with a hint naming --label-column, an option alerts train does not have."""
    data = tmp_path / "news.csv"
    topics = ["earnings", "legal", "macro", "mergers"] * 3
    rows = "".join(f"{topic} news {i},{topic},positive\n" for i, topic in enumerate(topics))
    data.write_text("headline,topic,mood\n" + rows, encoding="utf-8")
    # fmt: off
    args = ["train", mode, "--data", str(data), "--text-column", "headline",
            "--sentiment-column", "mood", "--out", str(tmp_path / "m"), "--max-steps", "1",
            "--eval-fraction", "0", "--batch-size", "8", "--max-length", "16", "--no-progress"]
    # fmt: on
    result = CliRunner().invoke(alerts, args)
    assert result.exit_code == 1, result.output
    assert f"file {data}, column mood: the sentiment labels are all 'positive'" in result.output
    assert "check that --sentiment-column names the sentiment column" in result.output
    assert not (tmp_path / "m").exists()  # nothing trained, nothing written


def test_the_webhooks_commands_say_when_redis_is_missing_or_down(monkeypatch):
    from support.servers import free_port

    monkeypatch.delenv("REDIS_URL", raising=False)
    missing = CliRunner().invoke(alerts, ["webhooks", "rejected"])
    assert missing.exit_code == 1 and "set REDIS_URL (or --redis-url)" in missing.output
    down = f"redis://127.0.0.1:{free_port()}/0"
    for args in (["rejected"], ["resend", "--all"]):
        result = CliRunner().invoke(alerts, ["webhooks", *args, "--redis-url", down])
        assert result.exit_code == 1, result.output
        assert f"Error: could not use the webhook outbox in Redis at {down}" in result.output
        assert "Fix: check that Redis is up" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("args", "found"), [([], "neither"), (["--all", "a-1"], "both")])
def test_resend_takes_either_all_or_alert_ids(args, found):
    result = CliRunner().invoke(alerts, ["webhooks", "resend", *args, "--redis-url", "redis://x"])
    assert result.exit_code == 1
    assert f"expected either --all or the ALERT_IDs to re-send, found {found}" in result.output
