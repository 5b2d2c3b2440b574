"""Rolling updates drop no request: the HTTP pods wait out endpoint removal (preStop), gunicorn
then drains in-flight requests on SIGTERM, and Kubernetes gives it the time to do both.

Kubernetes sends SIGTERM and removes the pod from the Service endpoints at the same time; until
every node's proxy and the ingress have caught up (a few seconds), new requests still arrive.
The preStop sleep keeps the pod serving through that window; SIGTERM comes after it, and
terminationGracePeriodSeconds (counted from the start of preStop) must cover the sleep plus
gunicorn's graceful timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from support.servers import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
GUNICORN = Path(sys.executable).parent / "gunicorn"
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
