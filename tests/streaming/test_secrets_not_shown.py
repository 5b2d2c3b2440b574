"""Connection secrets (REDIS_*, KAFKA_*) never show in --help, startup logs or error messages.

Each app's /healthz is checked in tests/apps/<app>/test_healthz_secrets.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.cli import cli
from threefold.streaming.services import free_port

REDIS_PW = "redis-pw-71c3"
KAFKA_PW = "kafka-pw-0e9a"
SECRETS = (REDIS_PW, KAFKA_PW)


@pytest.fixture
def secret_env(tmp_path: Path) -> dict[str, str]:
    """Every secret-bearing setting set, as an operator would set them."""
    (tmp_path / "kafka-password").write_text(KAFKA_PW + "\n")
    return {
        "REDIS_URL": f"redis://app:{REDIS_PW}@127.0.0.1:1/0",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": "alerts",
        "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "kafka-password"),
    }


@pytest.mark.parametrize(
    "command",
    [
        ["alerts", "run", "--help"],
        ["stream", "replay", "--help"],
        ["serve", "qa", "--help"],
        ["serve", "recs", "--help"],
        ["serve", "dashboard", "--help"],
        ["demo", "--help"],
    ],
)
def test_help_shows_no_secret(command: list[str], secret_env, monkeypatch) -> None:
    for name, value in secret_env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    for secret in SECRETS:
        assert secret not in result.output


@pytest.mark.integration
def test_alerts_run_startup_logs_and_errors_show_no_secret(secret_env, tmp_path) -> None:
    """The consumer logs its settings and connections, then fails (no models): nothing leaks."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **secret_env}
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("threefold")), "alerts", "run",
            "--topic-model", str(tmp_path / "missing-topic"),
            "--sentiment-model", str(tmp_path / "missing-sentiment"),
            "--stop-after", "1",
        ],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert '\\"security_protocol\\": \\"SASL_PLAINTEXT\\"' in output  # the connections line
    assert "redis://app:***@127.0.0.1:1/0" in output
    for secret in SECRETS:
        assert secret not in output


def test_replay_error_shows_no_secret(secret_env, monkeypatch, tmp_path) -> None:
    for name, value in secret_env.items():
        monkeypatch.setenv(name, value)
    data = tmp_path / "news.jsonl"
    data.write_text('{"id": "1", "text": "hello"}\n')
    result = CliRunner().invoke(cli, ["stream", "replay", str(data), "--topic", "t"])
    assert result.exit_code != 0
    for secret in SECRETS:
        assert secret not in result.output


def _serve_output(args: list[str], env: dict[str, str], seconds: float) -> str:
    """Everything a `threefold serve ...` process prints in its first `seconds` (then stopped)."""
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("threefold")), "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    return output


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "seconds"),
    [
        (["dashboard"], 20),  # Redis unreachable: serves degraded
        (["qa"], 60),  # no bot and no KB: the error names the fix
    ],
)
def test_serve_startup_logs_and_errors_show_no_secret(
    args: list[str], seconds: float, secret_env, tmp_path
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "THREEFOLD_QA_BOT_DIR": str(tmp_path / "no-bot"),
        "THREEFOLD_QA_KB_PATH": "",
        **secret_env,
    }
    output = _serve_output([*args, "--port", str(free_port())], env, seconds)
    assert "Running on" in output or "Error:" in output, output
    for secret in SECRETS:
        assert secret not in output
