"""Rolling updates drop no request: the HTTP pods wait out endpoint removal (preStop), gunicorn
then drains in-flight requests on SIGTERM, and Kubernetes gives it the time to do both.

Kubernetes sends SIGTERM and removes the pod from the Service endpoints at the same time; until
every node's proxy and the ingress have caught up (a few seconds), new requests still arrive.
The preStop sleep keeps the pod serving through that window; SIGTERM comes after it, and
terminationGracePeriodSeconds (counted from the start of preStop) must cover the sleep plus
gunicorn's graceful timeout.

A SIGTERM is never lost: the image's init (tini) is PID 1 and forwards it (the kernel drops a
signal to a PID 1 without a handler for it, bash's included), and the alerts consumer handles
it from its first line on, also while it is still loading models or waiting for Kafka.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from support.dockerfile import dockerfile_stages
from support.servers import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
BIN = Path(sys.executable).parent
GUNICORN = BIN / "gunicorn"
IMAGE_ENTRYPOINT = "threefold-entrypoint"  # deploy/entrypoint.sh inside the image
DEMO_APP = "wsgiref.simple_server:demo_app"
HTTP_DEPLOYMENTS = ("qa-api", "recs-api", "dashboard")  # the roles gunicorn serves
MIN_PRESTOP_S = 3  # endpoint removal reaches kube-proxy and ingress controllers in 1-3 s
STOP_MARGIN_S = 5  # for the last worker's exit and the kubelet's own latency
SLOW_APP = """
import time


def app(environ, start_response):
    seconds = float(environ.get("QUERY_STRING") or 0)
    time.sleep(seconds)
    body = b"done after %.1f s" % seconds
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def _deployments() -> dict[str, dict]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment":
                found[doc["metadata"]["name"]] = doc
    return found


def _configmap() -> dict[str, str]:
    [doc] = [d for d in yaml.safe_load_all((K8S / "configmap.yaml").read_text()) if d]
    return {key: str(value) for key, value in doc["data"].items()}


def _gunicorn_settings(env: dict[str, str]) -> dict[str, str]:
    """`gunicorn --print-config` with deploy/gunicorn.conf.py under `env`."""
    done = subprocess.run(
        [
            str(GUNICORN),
            "--print-config",
            "-c",
            str(GUNICORN_CONF),
            "wsgiref.simple_server:demo_app",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=True,
    )
    lines = (line.split(" = ", 1) for line in done.stdout.splitlines() if " = " in line)
    return {key.strip(): value.strip() for key, value in lines}


def _pod_env(container: dict) -> dict[str, str]:
    """The container's literal environment: the ConfigMap, then its own `env` values."""
    env = _configmap()
    env.update({e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e})
    return env


def _prestop_seconds(name: str, container: dict) -> int:
    hook = container.get("lifecycle", {}).get("preStop", {})
    command = hook.get("exec", {}).get("command")
    assert command and command[0] == "/bin/sleep" and len(command) == 2, (
        f"{name}: expected lifecycle.preStop.exec.command ['/bin/sleep', SECONDS], found {hook}"
    )
    return int(command[1])


@pytest.mark.parametrize("name", HTTP_DEPLOYMENTS)
def test_http_deployments_sleep_before_sigterm_within_the_grace_period(name: str) -> None:
    deployment = _deployments()[name]
    spec = deployment["spec"]["template"]["spec"]
    [container] = [c for c in spec["containers"] if c["args"][0] == name]
    sleep_s = _prestop_seconds(name, container)
    graceful_s = int(_gunicorn_settings(_pod_env(container))["graceful_timeout"])
    grace_s = spec["terminationGracePeriodSeconds"]
    assert sleep_s >= MIN_PRESTOP_S, f"{name}: preStop sleeps {sleep_s} s"
    assert grace_s >= sleep_s + graceful_s + STOP_MARGIN_S, (
        f"{name}: terminationGracePeriodSeconds {grace_s} < preStop {sleep_s} s + gunicorn "
        f"graceful_timeout {graceful_s} s + {STOP_MARGIN_S} s: the kubelet would SIGKILL "
        "requests gunicorn is still finishing"
    )
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0, f"{name}: a rolling update keeps every replica"


def test_the_prestop_command_is_run_when_the_image_is_built() -> None:
    """A base image without /bin/sleep would make the hook fail, and Kubernetes then stops the
    container at once (an event, no error): the image's smoke check runs the command."""
    commands = {
        tuple(_deployments()[name]["spec"]["template"]["spec"]["containers"][0]["lifecycle"][
            "preStop"]["exec"]["command"][:1])
        for name in HTTP_DEPLOYMENTS
    }  # fmt: skip
    assert commands == {("/bin/sleep",)}
    runtime = (DEPLOY / "Dockerfile").read_text().split("AS runtime", 1)[1]
    assert "/bin/sleep 0" in runtime, "the runtime stage's smoke check runs the preStop command"


def test_compose_gives_the_web_services_gunicorns_graceful_timeout() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    graceful_s = int(_gunicorn_settings({})["graceful_timeout"])
    for name in HTTP_DEPLOYMENTS:
        service = compose["services"][name]
        assert service.get("init") is True, f"{name}: an init forwards SIGTERM to gunicorn"
        period = service["stop_grace_period"]
        assert period.endswith("s") and int(period[:-1]) >= graceful_s + STOP_MARGIN_S, (
            f"{name}: stop_grace_period {period} < graceful_timeout {graceful_s} s + margin"
        )


def test_the_entrypoint_execs_the_server_so_sigterm_reaches_it() -> None:
    """The role script replaces itself (exec): gunicorn is the container's main process and
    receives SIGTERM itself, with no shell in between that would swallow it."""
    process = subprocess.Popen(
        ["bash", str(ENTRYPOINT), sys.executable, "-c", "import os; print(os.getpid())"],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert int(out.strip()) == process.pid


@pytest.fixture
def slow_server(tmp_path: Path):
    """gunicorn with deploy/gunicorn.conf.py serving an app that sleeps ?SECONDS per request."""
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    port = free_port()
    process = subprocess.Popen(
        [str(GUNICORN), "-c", str(GUNICORN_CONF), "slow_app:app"],
        cwd=tmp_path,
        env={**os.environ, "PORT": str(port), "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(process, f"{base}/?0")
    yield base, process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def test_gunicorn_finishes_in_flight_requests_on_sigterm_and_exits_cleanly(slow_server) -> None:
    base, process = slow_server
    answers: list[tuple[int, bytes]] = []

    def in_flight() -> None:
        with urllib.request.urlopen(f"{base}/?2", timeout=30) as response:
            answers.append((response.status, response.read()))

    request = threading.Thread(target=in_flight)
    request.start()
    time.sleep(0.5)  # the request is being served
    process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    time.sleep(0.3)
    # a new request is refused, reset or left unanswered: why preStop waits before SIGTERM
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/?0", timeout=2)
    request.join(timeout=30)
    assert answers == [(200, b"done after 2.0 s")], "the in-flight request was answered"
    assert process.wait(timeout=30) == 0, process.stderr.read()
    assert time.monotonic() - stopped_at >= 1.0, "gunicorn waited for the request to finish"


# ---------------------------------------------------------------- SIGTERM during start-up


def _closed_port() -> int:
    """A loopback port nobody listens on: Kafka and Redis there are unreachable."""
    return free_port()


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without Kafka, Redis and threefold settings, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KAFKA_", "REDIS_", "THREEFOLD_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def _pid_namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=30)
    return done.returncode == 0


def _as_pid_1(argv: list[str]) -> list[str]:
    """`argv` as the first process of a new PID namespace, as in a container without an init."""
    if not _pid_namespaces_work():
        pytest.skip("`unshare --pid --fork` is not available here (needs root or user namespaces)")
    return ["unshare", "--pid", "--fork", "--kill-child", *argv]


def _first_child(pid: int) -> int:
    """The PID (in this namespace) of the process `unshare --fork` started."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for _ in range(500):
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.01)
    raise AssertionError(f"process {pid} started no child")


class _Started:
    """A process whose stderr is read on a thread, so a test can wait for a log line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def wait_for(self, text: str, timeout_s: float = 300) -> None:
        with self._seen:
            found = self._seen.wait_for(
                lambda: any(text in line for line in self.lines) or self.process.poll() is not None,
                timeout=timeout_s,
            )
        assert found and any(text in line for line in self.lines), (
            f"no {text!r} in the log:\n{''.join(self.lines)}"
        )

    def finish(self, timeout_s: float = 120) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once it exits; killed (and the test failed) if it hangs."""
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise AssertionError(
                f"still running {timeout_s} s after SIGTERM:\n{''.join(self.lines)}"
            ) from None
        self._reader.join(timeout=30)
        return self.process.returncode, self.process.stdout.read(), "".join(self.lines)


@pytest.fixture(scope="module")
def alerts_models(tmp_path_factory) -> dict[str, Path]:
    """Topic and sentiment classifiers the consumer loads (untrained heads on the packaged
    MiniLM: loading them is the start-up work, what they predict does not matter here)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from threefold.apps.alerts.windows import SENTIMENTS
    from threefold.core.base_model import resolve_base_model
    from threefold.core.classifier import TextClassifier

    base = resolve_base_model()
    root = tmp_path_factory.mktemp("alerts-models")
    labels = {"topic": ["earnings", "legal", "markets"], "sentiment": list(SENTIMENTS)}
    for task, names in labels.items():
        model = AutoModelForSequenceClassification.from_pretrained(
            base, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
        )
        tokenizer = AutoTokenizer.from_pretrained(base)
        TextClassifier(model, tokenizer, names, base_model=base, max_length=32).save(root / task)
    return {task: root / task for task in labels}


def _consumer_argv(models: dict[str, Path]) -> list[str]:
    """`threefold alerts run` against a Kafka and a Redis that are not there: its start-up
    (models, then topic creation, which waits for the broker) does not end by itself soon."""
    port = _closed_port()
    return [
        str(BIN / "threefold"),
        "alerts",
        "run",
        "--bootstrap",
        f"127.0.0.1:{port}",
        "--redis-url",
        f"redis://127.0.0.1:{port}/0",
        "--topic-model",
        str(models["topic"]),
        "--sentiment-model",
        str(models["sentiment"]),
    ]


def _assert_stopped_during_start_up(code: int, out: str, log: str) -> None:
    assert code == 0, f"exit code {code}, expected a normal stop's 0:\n{log}"
    assert "SIGTERM during start-up" in log, log
    assert "Traceback" not in log, log
    assert json.loads(out.strip().splitlines()[-1])["stopped"] is True


def test_consumer_stops_on_sigterm_during_start_up(alerts_models) -> None:
    """SIGTERM while the consumer loads its models or waits for Kafka ends it as a stop does:
    exit code 0 and a log line, instead of the default action (killed by the signal)."""
    started = _Started(_consumer_argv(alerts_models), _clean_env())
    started.wait_for('"connections: kafka')  # configured; models and Kafka still to come
    started.process.send_signal(signal.SIGTERM)
    _assert_stopped_during_start_up(*started.finish())


def test_consumer_as_pid_1_stops_on_sigterm_during_start_up(alerts_models) -> None:
    """The container without an init: the kernel drops a signal to a PID 1 that has no
    handler for it, so the handler must be there from the first line of the command."""
    started = _Started(_as_pid_1(_consumer_argv(alerts_models)), _clean_env())
    consumer = _first_child(started.process.pid)
    started.wait_for('"connections: kafka')
    os.kill(consumer, signal.SIGTERM)
    _assert_stopped_during_start_up(*started.finish())


def _image_command(*args: str) -> list[str]:
    """The image's ENTRYPOINT + `args`, with the entrypoint script run from deploy/."""
    runtime = dockerfile_stages()[-1]
    steps = {inst: value for inst, value in runtime["steps"]}
    argv = json.loads(steps["ENTRYPOINT"]) + list(args)
    local = {IMAGE_ENTRYPOINT: ["bash", str(ENTRYPOINT)]}
    return [part for word in argv for part in local.get(word, [word])]


def test_the_image_runs_every_role_under_an_init() -> None:
    """tini as PID 1 forwards SIGTERM to the role (-s: also when compose's `init: true`
    puts docker-init in front of it); the runtime stage installs it from Debian."""
    runtime = dockerfile_stages()[-1]
    steps = {inst: value for inst, value in runtime["steps"]}
    entrypoint = json.loads(steps["ENTRYPOINT"])
    assert entrypoint == ["tini", "-s", "--", IMAGE_ENTRYPOINT]
    installs = [a for i, a in runtime["steps"] if i == "RUN" and "apt-get install" in a]
    assert any(" tini" in a for a in installs), "the runtime stage installs Debian's tini"
    smoke = next(a for i, a in runtime["steps"] if i == "RUN" and "threefold --help" in a)
    assert "tini --version" in smoke, "the image's smoke check runs its init"


def test_a_shell_role_stops_on_sigterm_under_the_images_init(tmp_path: Path) -> None:
    """check-models (the pods' wait-for-models init containers) is bash, which as PID 1 would
    ignore SIGTERM until the kubelet kills it; under the image's init it stops at once."""
    command = _image_command("check-models", "THREEFOLD_QA_BOT_DIR")
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed here (`make system-deps` installs it)")
    env = _clean_env(THREEFOLD_QA_BOT_DIR=str(tmp_path / "qa-bot"), THREEFOLD_MODELS_WAIT_S="3600")
    started = _Started(_as_pid_1(command), env)
    init = _first_child(started.process.pid)
    started.wait_for("waiting for THREEFOLD_QA_BOT_DIR")
    os.kill(init, signal.SIGTERM)
    code, _, log = started.finish(timeout_s=60)
    assert code == 128 + signal.SIGTERM, f"exit code {code}:\n{log}"
