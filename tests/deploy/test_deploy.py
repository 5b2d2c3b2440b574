"""Offline validation of deploy/: the image, compose file and Kubernetes manifests.

No container engine runs here, so this checks what can be checked without one: every YAML parses
and is internally consistent (services, dependencies, volumes, selectors, probes, resources);
compose and the ConfigMap agree and set every deployment setting the apps read (model folders,
services, topics, tokens, origins); the build context makes a wheel with the console script and
sample data; and the image's entry commands (deploy/entrypoint.sh) run here with the same
arguments: gunicorn with deploy/gunicorn.conf.py and each app factory, `threefold alerts run`,
the model builds of `init-models` (the FAQ bot built and served end to end), the healthcheck.
"""

from __future__ import annotations

import ast
import csv
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.dockerfile import dockerfile_stages
from support.servers import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"
BIN = Path(sys.executable).parent
IMAGE_ENTRYPOINT = "threefold-entrypoint"
ROLES = {
    "qa-api",
    "recs-api",
    "dashboard",
    "alerts-consumer",
    "init-models",
    "check-models",
    "retrain",
}
WEB_ROLES = {
    "qa-api": "threefold.apps.qa.web:create_app()",
    "recs-api": "threefold.apps.recs.web:create_app()",
    "dashboard": "threefold.apps.alerts.web:create_app()",
}
APPS = ("qa", "alerts", "recs")
# Read by the entrypoint's init-models/check-models only (optional inputs), not by the apps.
ENTRYPOINT_ONLY_ENV = {
    "THREEFOLD_ALERTS_TRAIN_DATA",
    "THREEFOLD_MODELS_WAIT_S",
    "THREEFOLD_DRY_RUN",
}
# Settings a deployment must choose (where models live, what to connect to, who may call):
# deploy/ sets each one the apps read. Other settings (thresholds, TTLs, limits) keep the
# apps' defaults unless an operator overrides them.
DEPLOY_RELEVANT = re.compile(
    r"^(REDIS_URL|KAFKA_BOOTSTRAP_SERVERS|THREEFOLD_\w+_(DIR|MODEL|MODEL_DIR|TOPIC|GROUP_ID"
    r"|TOKENS?|ORIGINS|WEBHOOK|WEBHOOK_URL|METRICS_PORT|REDIS_URL|BOOTSTRAP_SERVERS))$"
)
# Per-app overrides of a shared setting: satisfied when deploy sets the shared one.
SHARED_SETTINGS = {"REDIS_URL": "REDIS_URL", "BOOTSTRAP_SERVERS": "KAFKA_BOOTSTRAP_SERVERS"}
# Variables the code reads that deploy deliberately leaves unset, and why.
UNSET_ON_PURPOSE = {
    "THREEFOLD_BASE_MODEL": "the image ships the packaged all-MiniLM-L6-v2 base model",
    "THREEFOLD_RECS_BASE_MODEL": "optional: the packaged base model is used when it is unset",
}
# Optional manifests that kustomization.yaml leaves out on purpose (applied with -f).
K8S_OPTIONAL = {"dev-services.yaml", "hpa.yaml", "retrain-cronjob.yaml"}
# The Secret threefold-secrets as a template, outside deploy/k8s: `kubectl apply -f deploy/k8s/`
# must never replace the Secret an operator created with real tokens.
SECRET_TEMPLATE = DEPLOY / "k8s-secret.template.yaml"
# Overlay for storage classes with ReadWriteOnce only: every pod on the node holding the claim.
ONE_NODE_OVERLAY = DEPLOY / "k8s-one-node"
THREEFOLD_ERRORS = ("ThreefoldError", "ConfigError", "ModelError", "ServiceError", "DataError")


# ---------------------------------------------------------------- helpers


def _interpolate(value: object) -> object:
    """Compose variable substitution with every variable unset: `${X:-d}` -> d, `$$` -> `$`."""
    if isinstance(value, dict):
        return {key: _interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item) for item in value]
    if not isinstance(value, str):
        return value
    pattern = r"\$\$|\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}"
    return re.sub(pattern, lambda m: "$" if m[0] == "$$" else (m[1] or ""), value)


def _compose_raw() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return _interpolate(_compose_raw())


@pytest.fixture(scope="module")
def k8s_docs() -> dict[str, list[dict]]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs[path.name] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


@pytest.fixture(scope="module")
def secret() -> dict:
    """The Secret template's one document."""
    [doc] = [doc for doc in yaml.safe_load_all(SECRET_TEMPLATE.read_text()) if doc]
    assert doc["kind"] == "Secret" and doc["metadata"]["name"] == "threefold-secrets"
    return doc


def _objects(k8s_docs: dict[str, list[dict]], kind: str) -> list[dict]:
    return [doc for docs in k8s_docs.values() for doc in docs if doc["kind"] == kind]


def _workloads(k8s_docs: dict[str, list[dict]]) -> list[dict]:
    return _objects(k8s_docs, "Deployment") + _objects(k8s_docs, "StatefulSet")


def _jobs(k8s_docs: dict[str, list[dict]]) -> list[dict]:
    """Every Job, a CronJob's job template included (each has spec.template)."""
    cron = [job["spec"]["jobTemplate"] for job in _objects(k8s_docs, "CronJob")]
    return _objects(k8s_docs, "Job") + cron


def _env_map(environment: object) -> dict[str, str]:
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {key: "" if value is None else str(value) for key, value in (environment or {}).items()}


def _threefold_services(compose: dict) -> dict[str, dict]:
    return {
        name: service
        for name, service in compose["services"].items()
        if "threefold" in str(service.get("image", "")) or "build" in service
    }


def _dry_run(*args: str, env: dict[str, str] | None = None) -> list[list[str]]:
    """The commands the entrypoint would run for a role, each as argv."""
    full_env = {**os.environ, **(env or {}), "THREEFOLD_DRY_RUN": "1"}
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", str(ENTRYPOINT), *args], capture_output=True, text=True, env=full_env, timeout=60
    )
    assert done.returncode == 0, f"entrypoint {args}: {done.stderr}"
    return [shlex.split(line) for line in done.stdout.splitlines() if line.strip()]


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _require_module(name: str) -> None:
    if not _has_module(name):
        pytest.skip(f"{name} does not exist yet (its app is being built); rerun when it does")


def _run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 180):
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.update(env or {})
    return subprocess.run(
        argv, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT
    )


def _model_env(base: Path) -> dict[str, str]:
    """The registry at `base` and its entries, as deploy/ sets them (base = /models there)."""
    return {
        "THREEFOLD_MODELS_DIR": str(base),
        "THREEFOLD_QA_BOT_DIR": str(base / "qa-bot"),
        "THREEFOLD_RECS_MODEL_DIR": str(base / "recs-ranker"),
        "THREEFOLD_ALERTS_TOPIC_MODEL_DIR": str(base / "alerts-topic"),
        "THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR": str(base / "alerts-sentiment"),
    }


def _make_entry(path: Path, version: str = "v1") -> None:
    """A registry entry with a current version, as a publish leaves it."""
    (path / "versions" / version).mkdir(parents=True)
    (path / "state.json").write_text(json.dumps({"current": version, "history": [version]}))


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_in_two_stages_from_python_slim_and_runs_as_non_root() -> None:
    stages = dockerfile_stages()
    assert [stage["name"] for stage in stages] == ["build", "runtime"]
    assert all(stage["base"] == "python:3.11-slim" for stage in stages)
    build, runtime = stages
    build_args = {args.split("=", 1)[0] for inst, args in build["steps"] if inst == "ARG"}
    assert {"TORCH_SPEC", "EXTRAS"} <= build_args
    runs = " ".join(args for inst, args in build["steps"] if inst == "RUN")
    assert "pip install ${TORCH_SPEC}" in runs
    assert re.search(r'pip install [^&;]*"\.\[\$\{EXTRAS\}\]"', runs)
    torch_default = next(a for i, a in build["steps"] if i == "ARG" and a.startswith("TORCH_SPEC="))
    assert "whl/cpu" in torch_default, "the default image must use the CPU build of torch"

    user = [args for inst, args in runtime["steps"] if inst == "USER"]
    assert user, "the runtime stage must switch to a non-root USER"
    uid_arg = next(a for i, a in runtime["steps"] if i == "ARG" and a.startswith("UID="))
    uid = uid_arg.split("=", 1)[1]
    resolved_user = user[-1].replace("${UID}", uid).split(":")[0]
    assert resolved_user not in {"root", "0"}
    env_text = " ".join(args for inst, args in runtime["steps"] if inst == "ENV")
    assert "HF_HUB_OFFLINE=1" in env_text
    assert any(inst == "VOLUME" and "/models" in args for inst, args in runtime["steps"])
    assert not any(inst == "COPY" and "/src" in args for inst, args in runtime["steps"]), (
        "the runtime stage copies only the virtualenv, not the build tree"
    )


def test_dockerfile_extras_exist_in_pyproject() -> None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    build = dockerfile_stages()[0]
    default = next(a for i, a in build["steps"] if i == "ARG" and a.startswith("EXTRAS="))
    for extra in default.split("=", 1)[1].strip('"').split(","):
        assert extra in extras, f"EXTRAS default names {extra!r}; pyproject has {sorted(extras)}"
    assert "gpu" in extras, "the CUDA build documents EXTRAS=serve,gpu"
    assert any("gunicorn" in req for req in extras["serve"])
    install = next(a for i, a in build["steps"] if i == "RUN" and '".[${EXTRAS}]"' in a)
    # faiss-cpu is a plain dependency: a gpu build must not keep both wheels of `faiss`
    assert "pip uninstall -y faiss-cpu" in install and "*,gpu,*" in install


def test_dockerfile_entrypoint_is_the_role_script_and_cmd_a_known_role() -> None:
    runtime = dockerfile_stages()[-1]
    steps = {inst: args for inst, args in runtime["steps"]}  # the last of each one counts
    assert json.loads(steps["ENTRYPOINT"])[-1] == IMAGE_ENTRYPOINT  # after its init
    cmd = json.loads(steps["CMD"])
    assert cmd[0] in ROLES
    copies = [args for inst, args in runtime["steps"] if inst == "COPY"]
    assert any(
        c.split()[-2:] == ["deploy/entrypoint.sh", f"/usr/local/bin/{IMAGE_ENTRYPOINT}"]
        for c in copies
    )
    assert any(
        c.split()[-2:] == ["deploy/gunicorn.conf.py", "/etc/threefold/gunicorn.conf.py"]
        for c in copies
    )
    env_text = " ".join(args for inst, args in runtime["steps"] if inst == "ENV")
    assert "GUNICORN_CONF=/etc/threefold/gunicorn.conf.py" in env_text


def test_dockerfile_copies_only_files_that_exist_and_the_context_filter_keeps() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for stage in dockerfile_stages():
        for inst, args in stage["steps"]:
            if inst != "COPY" or "--from=" in args:
                continue
            sources = [part for part in args.split()[:-1] if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
                assert source.rstrip("/") in kept, (
                    f"COPY {source}: excluded by deploy/Dockerfile.dockerignore; add !{source}"
                )


def test_build_context_makes_a_wheel_with_the_console_script_and_sample_data(
    tmp_path: Path,
) -> None:
    """What `pip install .` sees inside the image: only the files the context filter keeps."""
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    context = tmp_path / "context"
    for kept in (line[1:].rstrip("/") for line in ignore if line.startswith("!")):
        source, target = ROOT / kept, context / kept
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    done = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("threefold-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert "threefold = threefold.apps.cli:main" in scripts
    for target in WEB_ROLES.values():
        module = target.split(":", 1)[0]
        if _has_module(module):
            path = module.replace(".", "/")
            assert {path + ".py", path + "/__init__.py"} & names, f"{module} missing from the wheel"
    for argv in _init_commands(tmp_path).values():
        for word in argv:
            if word.endswith(".csv") and Path(word).is_file():
                packaged = "threefold/" + Path(word).relative_to(ROOT).as_posix()
                assert packaged in names, f"{packaged} is not in the wheel (package-data)"


def test_dockerfile_with_hadolint_when_installed() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (optional Dockerfile linter)")
    done = _run([hadolint, "--failure-threshold", "error", str(DEPLOY / "Dockerfile")])
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- gunicorn settings


def test_gunicorn_config_is_valid_and_reads_its_environment() -> None:
    env = {"WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "5", "PORT": "8123"}
    done = _run(
        [
            str(BIN / "gunicorn"),
            "--print-config",
            "-c",
            str(GUNICORN_CONF),
            "wsgiref.simple_server:demo_app",
        ],
        env=env,
    )
    assert done.returncode == 0, done.stderr
    settings = {
        key.strip(): value.strip()
        for key, value in (
            line.split(" = ", 1) for line in done.stdout.splitlines() if " = " in line
        )
    }
    assert settings["workers"] == "3"
    assert settings["threads"] == "5"
    assert settings["bind"] == "['0.0.0.0:8123']"
    assert settings["preload_app"] == "False"
    assert settings["worker_class"] == "gthread"


def test_gunicorn_config_rejects_a_bad_thread_count_with_the_variable_named() -> None:
    done = _run(
        [
            str(BIN / "gunicorn"),
            "--check-config",
            "-c",
            str(GUNICORN_CONF),
            "wsgiref.simple_server:demo_app",
        ],
        env={"GUNICORN_THREADS": "many"},
    )
    assert done.returncode != 0
    assert "GUNICORN_THREADS='many': expected a whole number" in done.stdout + done.stderr


@pytest.fixture
def gunicorn_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """gunicorn with deploy/gunicorn.conf.py serving the stdlib demo WSGI app on a free port."""
    port = free_port()
    log = tmp_path / "access.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(GUNICORN_CONF), "wsgiref.simple_server:demo_app"],
            env={**os.environ, "PORT": str(port)},
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(process, f"{base}/ready")
    yield base, process, log
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


def test_healthcheck_role_and_json_access_log_against_gunicorn(gunicorn_server) -> None:
    base, process, log = gunicorn_server
    healthy = _run(["bash", str(ENTRYPOINT), "healthcheck", f"{base}/healthz"])
    assert healthy.returncode == 0, healthy.stderr
    urllib.request.urlopen(f"{base}/api/thing?x=1", timeout=5).close()

    process.terminate()
    process.wait(timeout=30)
    stopped = _run(["bash", str(ENTRYPOINT), "healthcheck", f"{base}/healthz"])
    assert stopped.returncode == 1
    assert "healthcheck" in stopped.stderr

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    paths = [line["path"] for line in lines]
    assert "/api/thing" in paths
    assert "/healthz" not in paths, "probe requests are left out of the access log"
    thing = lines[paths.index("/api/thing")]
    assert thing["status"] == 200 and thing["query"] == "x=1" and thing["method"] == "GET"
    server_log = [json.loads(line) for line in process.stderr.read().splitlines() if line]
    assert any("Listening at" in entry["message"] for entry in server_log)


def test_access_log_never_shows_tokens(gunicorn_server) -> None:
    base, process, log = gunicorn_server
    request = urllib.request.Request(
        f"{base}/api/thing?token=s3cret-token&x=1",
        headers={"Authorization": "Bearer s3cret-bearer"},
    )
    urllib.request.urlopen(request, timeout=5).close()
    process.terminate()
    process.wait(timeout=30)
    text = log.read_text()
    assert "s3cret" not in text
    assert '"query": "token=[redacted]&x=1"' in text


# ---------------------------------------------------------------- entrypoint roles


def test_entrypoint_is_valid_bash_and_rejects_a_missing_role() -> None:
    assert _run(["bash", "-n", str(ENTRYPOINT)]).returncode == 0
    assert os.access(ENTRYPOINT, os.X_OK), "deploy/entrypoint.sh must be executable"
    done = _run(["bash", str(ENTRYPOINT)])
    assert done.returncode == 1
    assert "no role given" in done.stderr


@pytest.mark.parametrize("role", sorted(WEB_ROLES))
def test_web_roles_run_gunicorn_with_the_image_config_and_the_app_factory(role: str) -> None:
    [argv] = _dry_run(role, env={"GUNICORN_CONF": str(GUNICORN_CONF)})
    assert argv == ["gunicorn", "--config", str(GUNICORN_CONF), WEB_ROLES[role]]


@pytest.mark.parametrize("role", sorted(WEB_ROLES))
def test_web_role_command_loads_the_app_factory_locally(role: str, tmp_path: Path) -> None:
    """The image's gunicorn command with deploy's settings, run here: the factory is called.

    Models are deliberately absent, so a factory that loads them at start-up may stop with a
    threefold error naming the missing directory; anything else (import error, wrong factory
    name or signature) fails.
    """
    [argv] = _dry_run(role, env={"GUNICORN_CONF": str(GUNICORN_CONF)})
    module = argv[-1].split(":", 1)[0]
    _require_module(module)
    deploy_env = _interpolate(_compose_raw()["x-threefold-env"])
    env = {**deploy_env, **_model_env(tmp_path / "missing"), "REDIS_URL": "redis://127.0.0.1:9/0"}
    done = _run([str(BIN / "gunicorn"), "--check-config", *argv[1:]], env=env, timeout=300)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        assert any(name in output for name in THREEFOLD_ERRORS), output[-3000:]
        assert "ModuleNotFoundError" not in output and "AttributeError" not in output, output


def test_alerts_consumer_role_runs_the_alerts_run_command() -> None:
    [argv] = _dry_run("alerts-consumer", "--max-batch", "64")
    assert argv == ["threefold", "alerts", "run", "--max-batch", "64"]
    _require_module("threefold.apps.alerts.cli")
    done = _run([str(BIN / "threefold"), "alerts", "run", "--help"])
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("app", ["qa", "recs", "dashboard"])
def test_serve_commands_exist(app: str) -> None:
    module = {"qa": "qa", "recs": "recs", "dashboard": "alerts"}[app]
    _require_module(f"threefold.apps.{module}.cli")
    done = _run([str(BIN / "threefold"), "serve", app, "--help"])
    assert done.returncode == 0, done.stderr


def test_other_commands_pass_through() -> None:
    assert _dry_run("threefold", "stream", "replay", "--help") == [
        ["threefold", "stream", "replay", "--help"]
    ]


def _init_commands(tmp_path: Path) -> dict[str, list[str]]:
    commands = _dry_run("init-models", env=_model_env(tmp_path / "models"))
    return {argv[1]: argv for argv in commands}


def test_init_models_publishes_each_app_into_its_registry_entry(tmp_path: Path) -> None:
    commands = _init_commands(tmp_path)
    assert sorted(commands) == ["alerts", "qa", "recs"]
    models = tmp_path / "models"
    outputs = {
        app: argv[argv.index("--out" if "--out" in argv else "--registry") + 1]
        for app, argv in commands.items()
    }
    assert outputs == {
        "qa": f"{models}/qa-bot",  # a bot directory is a registry entry
        "alerts": str(models),  # publishes ROOT/alerts-topic and ROOT/alerts-sentiment
        "recs": str(models),  # publishes ROOT/recs-ranker
    }
    assert "--out" not in commands["alerts"] + commands["recs"], "publish, never write in place"


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("THREEFOLD_ALERTS_TOPIC_MODEL_DIR", "alerts-topic"),
        ("THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR", "alerts-sentiment"),
        ("THREEFOLD_RECS_MODEL_DIR", "recs-ranker"),
    ],
)
def test_init_models_refuses_a_model_dir_outside_the_registry_it_publishes_to(
    name: str, entry: str, tmp_path: Path
) -> None:
    env = {**_model_env(tmp_path / "models"), name: str(tmp_path / "elsewhere")}
    done = _run(["bash", str(ENTRYPOINT), "init-models"], env={**env, "THREEFOLD_DRY_RUN": "1"})
    assert done.returncode == 1
    expected = f"{tmp_path / 'models'}/{entry}"
    assert f"{name}={tmp_path / 'elsewhere'} but the build publishes" in done.stderr
    assert f"Fix: set {name}={expected}" in done.stderr


@pytest.mark.parametrize("app", APPS)
def test_init_models_commands_match_the_app_cli(app: str, tmp_path: Path) -> None:
    """Each build command the image runs exists with the options it passes."""
    argv = _init_commands(tmp_path)[app]
    _require_module(f"threefold.apps.{app}.cli")
    subcommand = [word for word in argv if not word.startswith("-")][:3]
    done = _run([str(BIN / "threefold"), *subcommand[1:], "--help"])
    assert done.returncode == 0, done.stderr
    for option in (word for word in argv if word.startswith("--")):
        assert option in done.stdout, f"`{' '.join(subcommand)}` has no {option}:\n{done.stdout}"


@pytest.mark.parametrize("app", APPS)
def test_init_models_sample_data_is_shipped_in_the_package(app: str, tmp_path: Path) -> None:
    argv = _init_commands(tmp_path)[app]
    data_files = [Path(word) for word in argv if word.endswith((".csv", ".jsonl", ".json"))]
    assert data_files
    data_dir = data_files[0].parent
    if not data_dir.is_dir():
        pytest.skip(f"{data_dir} does not exist yet (the {app} app ships it)")
    present = sorted(path.name for path in data_dir.iterdir())
    for path in data_files:
        assert path.is_file(), f"init-models uses {path.name}; {data_dir} has {present}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"threefold.apps.{app}" = [' in pyproject and '"data/*"' in pyproject


def test_init_models_keeps_models_that_exist(tmp_path: Path) -> None:
    """Entries with a current version are kept, and so is a plain model folder a user set."""
    env = _model_env(tmp_path / "models")
    for name in ("THREEFOLD_QA_BOT_DIR", "THREEFOLD_ALERTS_TOPIC_MODEL_DIR"):
        _make_entry(Path(env[name]))
    Path(env["THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR"]).mkdir(parents=True)
    (Path(env["THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR"]) / "config.json").write_text("{}")
    env["THREEFOLD_RECS_MODEL_DIR"] = str(tmp_path / "my-ranker")  # plain, outside the registry
    Path(env["THREEFOLD_RECS_MODEL_DIR"]).mkdir()
    (Path(env["THREEFOLD_RECS_MODEL_DIR"]) / "ranker.json").write_text("{}")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    done = _run(["bash", str(ENTRYPOINT), "init-models"], env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("keeping it") == 3
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "alerts-sentiment",
        "alerts-topic",
        "qa-bot",
    ]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_an_alerts_multitask_entry_stands_for_the_topic_and_sentiment_models(
    tmp_path: Path,
) -> None:
    """`alerts train` publishes alerts-multitask for data large enough to fine-tune, and the
    consumer serves it in place of alerts-topic + alerts-sentiment: init and check agree."""
    env = _model_env(tmp_path / "models")
    for name in ("THREEFOLD_QA_BOT_DIR", "THREEFOLD_RECS_MODEL_DIR"):
        _make_entry(Path(env[name]))
    alerts = ("THREEFOLD_ALERTS_TOPIC_MODEL_DIR", "THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR")
    absent = _run(["bash", str(ENTRYPOINT), "check-models", *alerts], env=env)
    assert absent.returncode == 1
    _make_entry(tmp_path / "models" / "alerts-multitask")
    assert _run(["bash", str(ENTRYPOINT), "check-models", *alerts], env=env).returncode == 0
    done = _run(["bash", str(ENTRYPOINT), "init-models"], env=env)
    assert done.returncode == 0, done.stderr
    assert "alerts-multitask present, keeping it" in done.stderr
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "alerts-multitask",
        "qa-bot",
        "recs-ranker",
    ]
    retrain = _dry_run("retrain", "alerts", env=env)  # the multi-task retrain covers both tasks
    assert [argv[:3] for argv in retrain] == [["threefold", "retrain", "alerts"]]
    mine = {**env, "THREEFOLD_ALERTS_TOPIC_MODEL_DIR": str(tmp_path / "my-topic")}
    elsewhere = _run(["bash", str(ENTRYPOINT), "check-models", *alerts], env=mine)
    assert elsewhere.returncode == 1  # a folder of the user's own is not stood in for


def test_check_models_waits_for_the_named_directories(tmp_path: Path) -> None:
    env = _model_env(tmp_path)
    _make_entry(Path(env["THREEFOLD_QA_BOT_DIR"]))
    assert (
        _run(["bash", str(ENTRYPOINT), "check-models", "THREEFOLD_QA_BOT_DIR"], env=env).returncode
        == 0
    )
    missing = _run(["bash", str(ENTRYPOINT), "check-models"], env=env)
    assert missing.returncode == 1
    assert "THREEFOLD_RECS_MODEL_DIR=" in missing.stderr
    assert "THREEFOLD_QA_BOT_DIR=" not in missing.stderr.split("missing models")[-1]


def test_check_models_wants_a_current_version_or_a_plain_model_folder(tmp_path: Path) -> None:
    env = _model_env(tmp_path / "models")
    interrupted = Path(env["THREEFOLD_RECS_MODEL_DIR"])  # a first build that never activated
    (interrupted / "versions" / "v1").mkdir(parents=True)
    plain = tmp_path / "my-sentiment"  # a model folder of the user's own, not an entry
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    env["THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR"] = str(plain)
    Path(env["THREEFOLD_ALERTS_TOPIC_MODEL_DIR"]).mkdir(parents=True)  # empty: no model

    def check(*names: str) -> subprocess.CompletedProcess:
        return _run(["bash", str(ENTRYPOINT), "check-models", *names], env=env)

    assert check("THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR").returncode == 0
    for name in ("THREEFOLD_RECS_MODEL_DIR", "THREEFOLD_ALERTS_TOPIC_MODEL_DIR"):
        done = check(name)
        assert done.returncode == 1, name
        assert f"{name}={env[name]}" in done.stderr
    (interrupted / "state.json").write_text(json.dumps({"current": "v1", "history": ["v1"]}))
    assert check("THREEFOLD_RECS_MODEL_DIR").returncode == 0


def _retrain_commands(tmp_path: Path, *apps: str, **env: str) -> list[list[str]]:
    return _dry_run("retrain", *apps, env={**_model_env(tmp_path / "models"), **env})


def test_retrain_role_runs_every_app_in_turn_against_the_registry(tmp_path: Path) -> None:
    commands = _retrain_commands(tmp_path)
    assert [argv[:3] for argv in commands] == [
        ["threefold", "retrain", "qa"],
        ["threefold", "retrain", "alerts"],  # sentiment
        ["threefold", "retrain", "alerts"],  # topic
        ["threefold", "retrain", "recs"],
    ]
    qa_bot = _init_commands(tmp_path)["qa"][-1]  # the bot init-models built (its --out)
    assert commands[0][commands[0].index("--bot-dir") + 1] == qa_bot
    for argv in commands[1:]:
        assert argv[argv.index("--registry") + 1] == str(tmp_path / "models"), argv
    alerts = [argv for argv in commands if argv[2] == "alerts"]
    assert sorted(argv[argv.index("--task") + 1] for argv in alerts) == ["sentiment", "topic"]
    assert _retrain_commands(tmp_path, "recs") == [commands[-1]]
    cronjob = yaml.safe_load((K8S / "retrain-cronjob.yaml").read_text())
    [container] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    compose_retrain = _compose_raw()["services"]["retrain"]
    assert container["args"] == compose_retrain["command"] == ["retrain", *APPS]


def test_retrain_role_trains_on_the_data_init_models_built_from(tmp_path: Path) -> None:
    own = {
        "THREEFOLD_ALERTS_TRAIN_DATA": str(tmp_path / "headlines.csv"),
        "THREEFOLD_RECS_ITEMS_PATH": str(tmp_path / "items.csv"),
        "THREEFOLD_RECS_EVENTS_PATH": str(tmp_path / "events.csv"),
    }
    commands = _retrain_commands(tmp_path, "alerts", "recs", **own)
    for argv in commands[:2]:
        assert argv[argv.index("--training-data") + 1] == own["THREEFOLD_ALERTS_TRAIN_DATA"]
    recs = commands[2]
    assert recs[recs.index("--items") + 1] == own["THREEFOLD_RECS_ITEMS_PATH"]
    assert recs[recs.index("--events") + 1] == own["THREEFOLD_RECS_EVENTS_PATH"]
    sample = _init_commands(tmp_path)["recs"]
    default = _retrain_commands(tmp_path, "recs")[0]
    for option in ("--items", "--events"):
        assert default[default.index(option) + 1] == sample[sample.index(option) + 1]


@pytest.mark.parametrize("app", APPS)
def test_retrain_commands_match_the_app_cli(app: str, tmp_path: Path) -> None:
    """Each retrain command the CronJob and compose run exists with the options it passes."""
    _require_module(f"threefold.apps.{app}.cli")
    done = _run([str(BIN / "threefold"), "retrain", app, "--help"])
    assert done.returncode == 0, done.stderr
    for argv in _retrain_commands(tmp_path, app):
        for option in (word for word in argv if word.startswith("--")):
            assert option in done.stdout, f"`threefold retrain {app}` has no {option}"


def test_retrain_qa_uses_the_shipped_gate_set_only_for_the_shipped_kb(tmp_path: Path) -> None:
    [qa] = _retrain_commands(tmp_path, "qa")
    gate_set = Path(qa[qa.index("--gate-set") + 1])
    build = _init_commands(tmp_path)["qa"]
    kb = Path(build[build.index("--kb") + 1])
    assert gate_set == kb.with_name("store_gate.csv") and gate_set.is_file()
    own_gate = str(tmp_path / "my_gate.csv")
    [qa] = _retrain_commands(tmp_path, "qa", THREEFOLD_QA_GATE_SET=own_gate)
    assert qa[qa.index("--gate-set") + 1] == own_gate

    env = {**_model_env(tmp_path / "models"), "THREEFOLD_QA_KB_PATH": str(tmp_path / "faq.csv")}
    done = _run(["bash", str(ENTRYPOINT), "retrain"], env={**env, "THREEFOLD_DRY_RUN": "1"})
    assert done.returncode == 1
    assert "THREEFOLD_QA_GATE_SET is not set" in done.stderr and "Fix:" in done.stderr
    ran = [shlex.split(line)[2] for line in done.stdout.splitlines() if line.strip()]
    assert ran == ["alerts", "alerts", "recs"], "a failing app does not stop the others"
    assert "retrain failed for: qa" in done.stderr


def test_retrain_role_rejects_an_unknown_app_before_running_any(tmp_path: Path) -> None:
    env = {**_model_env(tmp_path / "models"), "THREEFOLD_DRY_RUN": "1"}
    done = _run(["bash", str(ENTRYPOINT), "retrain", "qa", "search"], env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "retrain: unknown app 'search'; expected some of: alerts qa recs" in done.stderr


@pytest.mark.slow
def test_retrain_role_runs_every_app_and_names_the_failed_ones(tmp_path: Path) -> None:
    """Real commands: alerts fails (no Redis for its corrections); qa still retrains, promotes."""
    _require_module("threefold.apps.qa.cli")
    env = {**_model_env(tmp_path / "models"), "REDIS_URL": "", "THREEFOLD_QA_KB_PATH": ""}
    for name in _model_env(tmp_path / "models"):
        if name not in {"THREEFOLD_MODELS_DIR", "THREEFOLD_QA_BOT_DIR"}:
            _make_entry(Path(env[name]))
    built = _run(["bash", str(ENTRYPOINT), "init-models"], env=env, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    bot_dir = Path(env["THREEFOLD_QA_BOT_DIR"])
    first = json.loads((bot_dir / "state.json").read_text())["current"]

    done = _run(["bash", str(ENTRYPOINT), "retrain", "alerts", "qa"], env=env, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "retrain alerts failed; carrying on with the others" in done.stderr
    assert "retrain failed for: alerts (the others ran" in done.stderr
    [report] = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert report["app"] == "qa" and report["current_version"] == first
    assert report["promoted"] and report["live_version"] == report["candidate_version"] != first
    assert json.loads((bot_dir / "state.json").read_text())["current"] == report["live_version"]


def _start_role(
    role: str, env: dict[str, str], log_dir: Path, ready_path: str = "/healthz"
) -> tuple[subprocess.Popen, str]:
    """Run a web role as the image does (entrypoint -> gunicorn) on a free port; returns once
    `ready_path` answers 2xx (the role's container healthcheck)."""
    port = free_port()
    full_env = {
        **os.environ,
        **env,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "GUNICORN_CONF": str(GUNICORN_CONF),
        "PORT": str(port),
    }
    with (log_dir / f"{role}.out").open("w") as out, (log_dir / f"{role}.err").open("w") as err:
        process = subprocess.Popen(
            ["bash", str(ENTRYPOINT), role], env=full_env, stdout=out, stderr=err
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while _run(["bash", str(ENTRYPOINT), "healthcheck", f"{base}{ready_path}"]).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{role} never became healthy:\n{(log_dir / f'{role}.err').read_text()}")
        time.sleep(1)
    return process, base


def _stop_gracefully(process: subprocess.Popen) -> int:
    process.terminate()
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.mark.slow
@pytest.mark.integration
def test_qa_api_role_answers_from_the_bot_init_models_built(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """init-models builds the FAQ bot; the qa-api role serves it through gunicorn."""
    _require_module("threefold.apps.qa.web")
    env = _model_env(tmp_path / "models")
    for name in (
        "THREEFOLD_RECS_MODEL_DIR",
        "THREEFOLD_ALERTS_TOPIC_MODEL_DIR",
        "THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR",
    ):
        _make_entry(Path(env[name]))  # kept as they are: only the bot is built here
    bot_dir = Path(env["THREEFOLD_QA_BOT_DIR"])
    (bot_dir / "versions").mkdir(parents=True)  # an interrupted first build: no state.json
    built = _run(["bash", str(ENTRYPOINT), "init-models"], env=env, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert (bot_dir / "state.json").is_file()
    current = json.loads((bot_dir / "state.json").read_text())["current"]
    assert [p.name for p in (bot_dir / "versions").iterdir()] == [current], "no half-built version"

    [sample] = [argv for argv in _init_commands(tmp_path).values() if argv[1] == "qa"]
    kb = Path(sample[sample.index("--kb") + 1])
    with kb.open(newline="") as handle:
        row = next(csv.DictReader(handle))
    faq_id, question = row["id"], row["question"]

    process, base = _start_role(
        "qa-api",
        {
            **env,
            "REDIS_URL": redis_url,
            "THREEFOLD_QA_REDIS_PREFIX": redis_prefix,
            "THREEFOLD_QA_KB_PATH": "",
        },
        tmp_path,
    )
    try:
        request = urllib.request.Request(
            f"{base}/api/chat",
            data=json.dumps({"message": question}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            reply = json.loads(response.read())
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
    finally:
        exit_code = _stop_gracefully(process)
    assert reply["faq_id"] == faq_id and reply["answer"], reply
    assert "# TYPE" in metrics
    assert exit_code == 0, "gunicorn stops cleanly on SIGTERM"


@pytest.mark.integration
def test_dashboard_role_serves_with_redis(tmp_path: Path, redis_url: str, redis_prefix: str):
    _require_module("threefold.apps.alerts.web")
    """Served and ready (`/openapi.json`, its container healthcheck) without a consumer; its
    /healthz says no consumer runs (503) until one writes a heartbeat, then ok."""
    from support.alerts_setup import heartbeat

    process, base = _start_role(
        "dashboard",
        {"REDIS_URL": redis_url, "THREEFOLD_ALERTS_REDIS_PREFIX": redis_prefix},
        tmp_path,
        ready_path="/openapi.json",
    )
    try:
        with pytest.raises(urllib.error.HTTPError) as no_consumer:
            urllib.request.urlopen(f"{base}/healthz", timeout=10)
        degraded = json.loads(no_consumer.value.read())
        store = _dashboard_store(redis_url, redis_prefix)
        store.write_heartbeat("deploy-test:1:0", heartbeat())
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            health = json.loads(response.read())
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            page = response.read().decode()
    finally:
        exit_code = _stop_gracefully(process)
    assert no_consumer.value.code == 503
    assert degraded["redis"] == "ok" and degraded["alerts_consumer"] == "none", degraded
    assert health["status"] == "ok"
    assert "<html" in page.lower()
    assert exit_code == 0


def _dashboard_store(redis_url: str, redis_prefix: str):
    """The alerts state store the dashboard reads, as a consumer would open it."""
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.resources import open_state_store
    from threefold.streaming.connections import RedisSettings

    return open_state_store(AlertsConfig(redis_prefix=redis_prefix), RedisSettings(url=redis_url))


# ---------------------------------------------------------------- compose


def test_compose_services_have_images_healthchecks_and_valid_dependencies(compose) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: no image or build"
        one_shot = service.get("restart") == "no"
        if not one_shot:
            test = service.get("healthcheck", {}).get("test")
            assert test, f"{name}: a long-running service needs a healthcheck"
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{dependency} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", f"{name}: {condition}"
                assert services[dependency].get("restart") == "no", f"{dependency} is no one-shot"


def test_compose_volumes_are_declared_and_models_mounted(compose) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert not source.startswith((".", "/")), f"{name}: bind mount {volume}"
            assert source in declared, f"{name}: volume {source} not declared"
    for name, service in _threefold_services(compose).items():
        assert "models:/models" in service["volumes"], f"{name} lacks the models volume"
    assert "redis-data:/data" in compose["services"]["redis"]["volumes"]
    assert "--appendonly" in compose["services"]["redis"]["command"]


def test_compose_threefold_services_use_entrypoint_roles_and_real_health_urls(compose) -> None:
    services = _threefold_services(compose)
    assert {service["command"][0] for service in services.values()} == (ROLES - {"check-models"})
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        if test:
            assert test[:3] == ["CMD", IMAGE_ENTRYPOINT, "healthcheck"], f"{name}: {test}"
    for name in WEB_ROLES:
        assert services[name]["ports"][0].endswith(":8000"), f"{name}: gunicorn listens on 8000"
    hosts = [
        port.rsplit(":", 1)[0] for s in compose["services"].values() for port in s.get("ports", [])
    ]
    assert len(hosts) == len(set(hosts)), f"host ports collide: {hosts}"
    consumer = services["alerts-consumer"]
    assert "ports" not in consumer, "scaled consumers cannot share a host port"
    metrics_port = consumer["environment"]["THREEFOLD_ALERTS_METRICS_PORT"]
    assert f"127.0.0.1:{metrics_port}/metrics" in consumer["healthcheck"]["test"][-1]


def test_compose_kafka_runs_kraft_and_addresses_match_the_app_settings(compose) -> None:
    kafka = _env_map(compose["services"]["kafka"]["environment"])
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"]
    assert not any("ZOOKEEPER" in key for key in kafka)
    env = compose["x-threefold-env"]
    assert f"PLAINTEXT://{env['KAFKA_BOOTSTRAP_SERVERS']}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    assert "kafka-broker-api-versions" in " ".join(
        compose["services"]["kafka"]["healthcheck"]["test"]
    )


def test_topics_created_are_the_topics_the_consumer_uses(compose, k8s_docs) -> None:
    env = compose["x-threefold-env"]
    topics = {
        env[name]
        for name in env
        if name.startswith("THREEFOLD_ALERTS_") and name.endswith("_TOPIC")
    }
    assert topics == {"news", "news-scored", "news-alerts", "news-dead-letter"}
    compose_script = " ".join(compose["services"]["init-topics"]["command"])
    job = next(j for j in _objects(k8s_docs, "Job") if j["metadata"]["name"] == "create-topics")
    k8s_script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    for script in (compose_script, k8s_script):
        created = set(re.findall(r'"([\w.-]+):', script))
        assert created == topics, f"topics created {created}, used {topics}"
        assert "--if-not-exists" in script


def test_gpu_override_builds_the_cuda_image_and_reserves_gpus(compose) -> None:
    override = _interpolate(yaml.safe_load((DEPLOY / "compose.gpu.yaml").read_text()))
    services = override["services"]
    assert set(services) == set(_threefold_services(compose)) - {"init-topics"}
    for name, service in services.items():
        assert service["image"] != compose["services"][name]["image"], f"{name}: own tag"
        args = service["build"]["args"]
        assert args["TORCH_SPEC"].startswith("torch")  # the tested release: test_dependency_lock
        assert args["EXTRAS"].split(",") == ["serve", "gpu"]
        if name != "dashboard":
            [device] = service["deploy"]["resources"]["reservations"]["devices"]
            assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    consumer = services["alerts-consumer"]["deploy"]
    assert consumer["replicas"] == compose["services"]["alerts-consumer"]["deploy"]["replicas"]


def test_topic_scripts_are_valid_bash(compose, k8s_docs) -> None:
    job = next(j for j in _objects(k8s_docs, "Job") if j["metadata"]["name"] == "create-topics")
    container = job["spec"]["template"]["spec"]["containers"][0]
    scripts = {
        "compose init-topics": compose["services"]["init-topics"]["command"][0],
        "k8s create-topics": container["args"][0],
    }
    assert compose["services"]["init-topics"]["entrypoint"] == ["/bin/bash", "-ec"]
    assert container["command"] == ["/bin/bash", "-ec"]
    for name, script in scripts.items():
        done = _run(["bash", "-n", "-c", script])
        assert done.returncode == 0, f"{name}: {done.stderr}"


def test_consumer_replicas_do_not_exceed_partitions(compose, k8s_docs) -> None:
    partitions = int(compose["services"]["init-topics"]["environment"]["NEWS_PARTITIONS"])
    assert int(compose["services"]["alerts-consumer"]["deploy"]["replicas"]) <= partitions
    job = next(j for j in _objects(k8s_docs, "Job") if j["metadata"]["name"] == "create-topics")
    job_env = {
        e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    consumer = next(
        d for d in _objects(k8s_docs, "Deployment") if d["metadata"]["name"] == "alerts-consumer"
    )
    assert consumer["spec"]["replicas"] <= int(job_env["NEWS_PARTITIONS"])


def test_compose_config_with_docker_compose_when_available() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    if _run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("docker CLI without the compose plugin: `docker compose config` unavailable")
    done = _run([docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"])
    assert done.returncode == 0, done.stderr


def test_compose_retrain_service_is_an_on_demand_profile_with_init_models_inputs(compose) -> None:
    services = compose["services"]
    retrain = services["retrain"]
    assert retrain["profiles"] == ["retrain"], "`up` must not start it; `run --rm retrain` does"
    assert retrain["restart"] == "no"
    assert retrain["command"][0] == "retrain"
    assert retrain["environment"] == services["init-models"]["environment"]
    assert "models:/models" in retrain["volumes"]
    assert retrain["depends_on"]["redis"]["condition"] == "service_healthy"
    assert not any("retrain" in (s.get("depends_on") or {}) for s in services.values())
    assert (
        "docker compose -f deploy/compose.yaml run --rm retrain"
        in (DEPLOY / "compose.yaml").read_text()
    )


def test_compose_retrain_profile_with_docker_compose_when_available() -> None:
    docker = shutil.which("docker")
    if docker is None or _run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("no docker compose: `docker compose --profile retrain config` not run")
    files = ["-f", str(DEPLOY / "compose.yaml")]
    done = _run([docker, "compose", *files, "--profile", "retrain", "config", "--services"])
    assert done.returncode == 0, done.stderr
    assert "retrain" in done.stdout.split()
    default = _run([docker, "compose", *files, "config", "--services"])
    assert "retrain" not in default.stdout.split()


# ---------------------------------------------------------------- environment contract


def test_compose_and_k8s_configuration_agree(compose, k8s_docs, secret) -> None:
    raw_env = _compose_raw()["x-threefold-env"]
    [configmap] = _objects(k8s_docs, "ConfigMap")
    secret_keys = set(secret["stringData"])
    assert set(raw_env) == set(configmap["data"]) | secret_keys
    assert not set(configmap["data"]) & secret_keys
    for key, value in raw_env.items():
        if key in configmap["data"] and "${" not in str(value):
            assert configmap["data"][key] == str(value), f"{key}: compose {value!r}"
        if key in secret_keys:
            assert str(value).startswith("${"), f"{key} is a secret: take it from the host env"
    image_env = " ".join(a for i, a in dockerfile_stages()[-1]["steps"] if i == "ENV")
    for key, value in _model_env(Path("/models")).items():
        assert raw_env[key] == value, f"compose {key}"
        assert f"{key}={value}" in image_env, f"Dockerfile ENV {key}"


def test_tokens_and_webhooks_are_secrets_that_compose_passes_through(
    compose, k8s_docs, secret
) -> None:
    """Sign-in tokens (admin, agents, analysts) and webhook URLs come from the Secret (k8s) or
    the host env (compose, which passes a container only the names x-threefold-env lists)."""
    [configmap] = _objects(k8s_docs, "ConfigMap")
    secret_like = re.compile(r"^THREEFOLD_\w+_(TOKENS?|WEBHOOK|WEBHOOK_URL)$")
    assert not [key for key in configmap["data"] if secret_like.match(key)]
    expected = {
        "THREEFOLD_QA_ADMIN_TOKEN",
        "THREEFOLD_RECS_ADMIN_TOKEN",
        "THREEFOLD_QA_AGENT_TOKENS",
        "THREEFOLD_ALERTS_ANALYST_TOKENS",
        "THREEFOLD_QA_HANDOFF_WEBHOOK",
        "THREEFOLD_ALERTS_WEBHOOK_URL",
    }
    assert expected <= set(secret["stringData"]), "the Secret template lists every secret"
    raw_env = _compose_raw()["x-threefold-env"]
    for key in expected:
        assert raw_env.get(key) == f"${{{key}:-}}", f"compose: {key} from the host env"
    guide = (DEPLOY / "OPERATIONS.md").read_text()
    for key in expected:
        assert key in guide, f"OPERATIONS.md does not say where {key} goes"


def test_no_secret_is_applied_with_the_manifests_and_the_template_holds_no_token(
    k8s_docs, secret
) -> None:
    """The Secret is created once from real values (`kubectl create secret`). A Secret among the
    manifests would replace it on any `kubectl apply -f deploy/k8s/`, and the template's old
    placeholder tokens were public (apps now refuse them: tests/core/test_named_tokens.py)."""
    assert not _objects(k8s_docs, "Secret"), "keep Secrets out of deploy/k8s"
    assert not list(K8S.rglob("*secret*.yaml"))
    assert set(secret["stringData"].values()) == {""}, "the template must not ship a value"


def test_consumer_metrics_listen_where_the_probes_and_prometheus_connect(
    compose, k8s_docs, tmp_path: Path, monkeypatch
) -> None:
    """The kubelet probes and Prometheus connect to the pod IP, not to 127.0.0.1: the
    consumer's /metrics must listen on every interface, on the port the manifests name."""
    _require_module("threefold.apps.alerts.config")
    from threefold.apps.alerts.config import AlertsConfig

    [configmap] = _objects(k8s_docs, "ConfigMap")
    [consumer] = [
        w for w in _objects(k8s_docs, "Deployment") if w["metadata"]["name"] == "alerts-consumer"
    ]
    [container] = _pod_spec(consumer)["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    annotations = consumer["spec"]["template"]["metadata"]["annotations"]
    models = _model_env(tmp_path / "models")
    for key in ("THREEFOLD_ALERTS_TOPIC_MODEL_DIR", "THREEFOLD_ALERTS_SENTIMENT_MODEL_DIR"):
        Path(models[key]).mkdir(parents=True)
    for place, env in (("compose.yaml", compose["x-threefold-env"]), ("k8s", configmap["data"])):
        with monkeypatch.context() as patch:
            patch.setattr(os, "environ", {**env, **models})
            config = AlertsConfig.from_env()
        assert config.metrics_addr in {"0.0.0.0", "::"}, (
            f"{place}: the consumer serves /metrics on {config.metrics_addr}: unreachable from "
            "the kubelet and Prometheus (set THREEFOLD_ALERTS_METRICS_ADDR=0.0.0.0)"
        )
        assert config.metrics_port == ports["metrics"] == int(annotations["prometheus.io/port"])
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def _literal_env_names() -> dict[str, set[str]]:
    """Environment names that appear as string literals in each package's source."""
    pattern = re.compile(r"\b(THREEFOLD_[A-Z0-9_]*[A-Z0-9]|REDIS_URL|KAFKA_BOOTSTRAP_SERVERS)\b")
    found: dict[str, set[str]] = {}
    folders = {app: ROOT / "apps" / app for app in APPS}
    folders |= {"streaming": ROOT / "streaming", "core": ROOT / "core"}
    for package, folder in folders.items():
        names = set()
        for path in folder.rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    names |= set(pattern.findall(node.value))
        found[package] = names
    return found


class _RecordingEnviron(dict):
    """os.environ stand-in that records every name looked up."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.read.add(key)
        return super().__contains__(key)


def _config_classes(app: str) -> list[type]:
    module = importlib.import_module(f"threefold.apps.{app}.config")
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and value.__module__ == module.__name__
        and callable(getattr(value, "from_env", None))
    ]


def _env_read_by_config(app: str, compose: dict, tmp_path: Path, monkeypatch) -> set[str]:
    """Names each `from_env()` of the app's config module reads, given deploy's values.

    Model locations point at existing (empty) folders here, so a config that checks paths
    gets past them and reads the rest; any other error fails the test: deploy's values must
    parse.
    """
    values = {**compose["x-threefold-env"], **_model_env(tmp_path / "models")}
    for key in _model_env(tmp_path / "models"):
        Path(values[key]).mkdir(parents=True, exist_ok=True)
    read = set()
    for cls in _config_classes(app):
        environ = _RecordingEnviron(values)
        with monkeypatch.context() as patch:
            patch.setattr(os, "environ", environ)
            cls.from_env()
        read |= environ.read
    return read


def _unset(required: set[str], present: set[str]) -> list[str]:
    missing = []
    for name in sorted(required - present - ENTRYPOINT_ONLY_ENV - set(UNSET_ON_PURPOSE)):
        shared = next((v for k, v in SHARED_SETTINGS.items() if name.endswith("_" + k)), None)
        if shared is None or shared not in present:
            missing.append(name)
    return missing


@pytest.mark.parametrize("app", APPS)
def test_every_deployment_setting_the_app_reads_is_set_by_deploy(
    app: str, compose, k8s_docs, secret, tmp_path: Path, monkeypatch
) -> None:
    _require_module(f"threefold.apps.{app}.config")
    literal = _literal_env_names()
    read = _env_read_by_config(app, compose, tmp_path, monkeypatch)
    read |= literal[app] | literal["streaming"]
    required = {name for name in read if DEPLOY_RELEVANT.match(name)}
    [configmap] = _objects(k8s_docs, "ConfigMap")
    missing_compose = _unset(required, set(compose["x-threefold-env"]))
    missing_k8s = _unset(required, set(configmap["data"]) | set(secret["stringData"]))
    assert not missing_compose, (
        f"the {app} app reads {missing_compose}: set them in x-threefold-env of deploy/compose.yaml"
    )
    assert not missing_k8s, (
        f"the {app} app reads {missing_k8s}: set them in deploy/k8s/configmap.yaml "
        f"({SECRET_TEMPLATE.name} for secrets)"
    )


@pytest.mark.parametrize("app", APPS)
def test_every_app_setting_deploy_sets_is_read_by_the_app(
    app: str, compose, tmp_path: Path, monkeypatch
) -> None:
    """A misspelt or retired name in deploy/ would be silently ignored by the app."""
    _require_module(f"threefold.apps.{app}.config")
    prefix = f"THREEFOLD_{app.upper()}_"
    deploy_env = dict(compose["x-threefold-env"])
    read = _env_read_by_config(app, compose, tmp_path, monkeypatch) | _literal_env_names()[app]
    unread = sorted(name for name in deploy_env if name.startswith(prefix) and name not in read)
    assert not unread, f"deploy sets {unread} but threefold.apps.{app} never reads them"


def test_unset_on_purpose_names_are_real() -> None:
    _require_module("threefold.apps.recs.config")
    literal = set().union(*_literal_env_names().values())
    from threefold.apps.recs.config import RecsConfig

    literal |= {f"THREEFOLD_RECS_{name.upper()}" for name in RecsConfig.__dataclass_fields__}
    assert set(UNSET_ON_PURPOSE) <= literal


# ---------------------------------------------------------------- Kafka / Redis security

SECRETS_MOUNT = "/run/secrets/threefold"
# Connection settings deploy leaves to the secret files or to operators who need them.
CONNECTION_FIELDS_NOT_SET = {
    "REDIS_PASSWORD": "a secret: REDIS_PASSWORD_FILE names the mounted file instead",
    "KAFKA_SASL_PASSWORD": "a secret: KAFKA_SASL_PASSWORD_FILE names the mounted file instead",
    "REDIS_CERT_FILE": "client certificates are optional (mTLS); OPERATIONS.md shows how",
    "REDIS_KEY_FILE": "goes with REDIS_CERT_FILE",
    "KAFKA_SSL_CERTFILE": "client certificates are optional (mTLS); OPERATIONS.md shows how",
    "KAFKA_SSL_KEYFILE": "goes with KAFKA_SSL_CERTFILE",
}


def _connection_names() -> set[str]:
    from threefold.streaming.connections import KafkaSettings, RedisSettings

    return {f"REDIS_{name.upper()}" for name in RedisSettings.__dataclass_fields__} | {
        f"KAFKA_{name.upper()}" for name in KafkaSettings.__dataclass_fields__
    }


def _tls_override() -> dict:
    return _interpolate(yaml.safe_load((DEPLOY / "compose.tls.yaml").read_text()))


def _deploy_connection_env(compose, k8s_docs) -> dict[str, set[str]]:
    [configmap] = _objects(k8s_docs, "ConfigMap")
    where = {
        "compose.yaml": set(compose["x-threefold-env"]),
        "compose.tls.yaml": set(_tls_override()["x-tls-env"]),
        "k8s/configmap.yaml": set(configmap["data"]),
    }
    return {
        place: {n for n in names if n.startswith(("REDIS_", "KAFKA_"))}
        for place, names in where.items()
    }


def test_every_kafka_and_redis_setting_deploy_sets_is_a_connection_setting(
    compose, k8s_docs
) -> None:
    """REDIS_*/KAFKA_* names are read by RedisSettings/KafkaSettings (a typo would be ignored)."""
    known = _connection_names()
    for place, names in _deploy_connection_env(compose, k8s_docs).items():
        assert names <= known, f"{place} sets {sorted(names - known)}: not a connection setting"


def test_deploy_sets_every_connection_setting_but_the_secrets_themselves(compose, k8s_docs) -> None:
    assert set(CONNECTION_FIELDS_NOT_SET) <= _connection_names()
    wanted = _connection_names() - set(CONNECTION_FIELDS_NOT_SET)
    found = _deploy_connection_env(compose, k8s_docs)
    compose_names = found["compose.yaml"] | found["compose.tls.yaml"]
    assert not wanted - compose_names, f"compose lacks {sorted(wanted - compose_names)}"
    k8s_names = found["k8s/configmap.yaml"]
    assert not wanted - k8s_names, f"configmap.yaml lacks {sorted(wanted - k8s_names)}"


def test_deploy_connection_values_load(compose, k8s_docs) -> None:
    from threefold.core.settings import load_settings
    from threefold.streaming.connections import KafkaSettings, RedisSettings

    [configmap] = _objects(k8s_docs, "ConfigMap")
    for env in (compose["x-threefold-env"], configmap["data"]):
        kafka = load_settings(KafkaSettings, "KAFKA_", env)
        redis = load_settings(RedisSettings, "REDIS_", env)
        assert kafka.security_protocol == "PLAINTEXT"
        assert kafka.client_config()["bootstrap_servers"] == "kafka:9092"
        assert redis.url == "redis://redis:6379/0"


def test_compose_tls_override_mounts_every_secret_file_it_names(tmp_path: Path) -> None:
    """Each *_FILE / *_CAFILE of compose.tls.yaml is a compose secret every app service mounts;
    with the files in place the settings load as SASL_SSL + rediss:// with an ACL user."""
    from threefold.core.settings import load_settings
    from threefold.streaming.connections import KafkaSettings, RedisSettings

    override = _tls_override()
    env = override["x-tls-env"]
    declared = set(override["secrets"])
    files = {k: v for k, v in env.items() if k.endswith(("_FILE", "_CAFILE"))}
    assert files, "compose.tls.yaml names no secret file"
    for key, path in files.items():
        assert path.startswith("/run/secrets/"), f"{key}={path}: compose mounts secrets there"
        assert path.removeprefix("/run/secrets/") in declared, f"{key}: {path} not a secret"
    for role in ("qa-api", "recs-api", "dashboard", "alerts-consumer", "init-models", "retrain"):
        service = override["services"][role]
        assert service["environment"] == env, role
        assert set(service["secrets"]) == declared, role
    for name, spec in override["secrets"].items():
        assert spec["file"] == f"./secrets/{name}", name
    local = {}
    for key, path in files.items():
        target = tmp_path / Path(path).name
        target.write_text("secret-value\n")
        local[key] = str(target)
    values = {
        **env,
        **local,
        "KAFKA_BOOTSTRAP_SERVERS": "broker.example.net:9093",
        "KAFKA_SASL_USERNAME": "threefold",
        "REDIS_URL": "rediss://redis.example.net:6380/0",
        "REDIS_USERNAME": "threefold",
    }
    kafka = load_settings(KafkaSettings, "KAFKA_", values).client_config()
    assert kafka["security_protocol"] == "SASL_SSL"
    assert kafka["sasl_plain_password"] == "secret-value"
    redis = load_settings(RedisSettings, "REDIS_", values).client_options()
    assert redis["password"] == "secret-value"
    assert redis["ssl_cert_reqs"] == "required"


def test_k8s_app_pods_mount_the_connection_secret_as_files(k8s_docs) -> None:
    [configmap] = _objects(k8s_docs, "ConfigMap")
    for key, value in configmap["data"].items():
        if key.startswith(("REDIS_", "KAFKA_")) and key.endswith(("_FILE", "_CAFILE")) and value:
            assert value.startswith(SECRETS_MOUNT + "/"), f"{key}={value}"
    apps = [w for w in _objects(k8s_docs, "Deployment") if w["metadata"]["name"] in WEB_ROLES]
    apps += [
        w for w in _objects(k8s_docs, "Deployment") if w["metadata"]["name"] == "alerts-consumer"
    ]
    assert len(apps) == 4
    for workload in apps:
        spec = workload["spec"]["template"]["spec"]
        [volume] = [v for v in spec["volumes"] if v["name"] == "connection-secrets"]
        assert volume["secret"] == {
            "secretName": "threefold-connection",
            "optional": True,
            "defaultMode": 0o440,
        }
        [container] = spec["containers"]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "connection-secrets"]
        assert mount == {"name": "connection-secrets", "mountPath": SECRETS_MOUNT, "readOnly": True}


# ---------------------------------------------------------------- Kubernetes


def test_k8s_manifests_are_well_formed(k8s_docs) -> None:
    for filename, docs in k8s_docs.items():
        assert docs, f"{filename} is empty"
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), filename
            assert doc["metadata"].get("name"), filename
            if doc["kind"] != "Namespace":
                assert doc["metadata"].get("namespace") == "threefold", (
                    f"{filename} {doc['kind']}/{doc['metadata']['name']}: namespace"
                )


def _pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def test_k8s_workloads_have_selectors_probes_and_resources(k8s_docs) -> None:
    for workload in _workloads(k8s_docs):
        name = workload["metadata"]["name"]
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{name}: selector does not match template"
        spec = _pod_spec(workload)
        volumes = {volume["name"] for volume in spec.get("volumes", [])}
        volumes |= {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        for container in spec.get("initContainers", []) + spec["containers"]:
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), (
                f"{name}/{container['name']}: resource requests"
            )
            assert "memory" in resources.get("limits", {}), f"{name}/{container['name']}: limit"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: mount of unknown volume {mount['name']}"
        for container in spec["containers"]:
            assert container.get("livenessProbe"), f"{name}: liveness probe"
            port_names = {port.get("name") for port in container.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                http = container.get(probe, {}).get("httpGet")
                if http and isinstance(http["port"], str):
                    assert http["port"] in port_names, f"{name} {probe}: port {http['port']}"


# Answered by each web app as soon as its factory has loaded the models, whatever Redis does.
PROBE_PATH = "/openapi.json"


def _web_containers(k8s_docs) -> dict[str, dict]:
    deployments = _objects(k8s_docs, "Deployment")
    return {
        w["metadata"]["name"]: _pod_spec(w)["containers"][0]
        for w in deployments
        if w["metadata"]["name"] in WEB_ROLES
    }


def test_k8s_web_probes_do_not_depend_on_redis(k8s_docs) -> None:
    """/healthz answers 503 while Redis is down (the apps keep serving, degraded): as a
    liveness probe it would restart every replica on a Redis blip, as a startup probe keep
    new pods from starting, as a readiness probe take every replica out of the Service
    (no degraded serving, no recs spool) at once."""
    containers = _web_containers(k8s_docs)
    assert set(containers) == set(WEB_ROLES)
    for name, container in containers.items():
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container[probe]
            http = spec.get("httpGet")
            if http is not None:
                assert http["path"] == PROBE_PATH, f"{name} {probe}: {http['path']}"
                assert http["port"] == "http"
            else:
                assert spec["tcpSocket"]["port"] == "http", f"{name} {probe}"


def test_dashboard_liveness_survives_as_many_live_feeds_as_threads(k8s_docs) -> None:
    """Each open dashboard page holds a gunicorn thread for as long as it is open: with
    GUNICORN_THREADS pages open an HTTP probe waits for a free thread and times out. Liveness
    must not restart the pod (and drop every viewer) for that: it checks the port only."""
    container = _web_containers(k8s_docs)["dashboard"]
    assert container["livenessProbe"].get("tcpSocket") == {"port": "http"}
    assert "httpGet" not in container["livenessProbe"]


# A hung Redis slows every request to a few seconds (each Redis call waits for its timeout) and
# the kubelet's probe queues behind them for one of the worker's threads.
READINESS_TIMEOUT_MIN_S = 10
LIVENESS_WINDOW_MIN_S = 60  # failures in a row x period before a restart


def test_k8s_web_probes_tolerate_requests_queued_behind_a_hung_redis(k8s_docs) -> None:
    """Liveness checks the port (a process that accepts connections is alive, and a restart
    would not fix Redis but lose qa's in-memory sessions and pending records); readiness
    waits out a few seconds of queueing before it takes a replica out of the Service."""
    for name, container in _web_containers(k8s_docs).items():
        liveness = container["livenessProbe"]
        assert liveness.get("tcpSocket") == {"port": "http"}, f"{name}: liveness on the port"
        window = liveness["periodSeconds"] * liveness["failureThreshold"]
        assert window >= LIVENESS_WINDOW_MIN_S, f"{name}: restarted after {window} s"
        readiness = container["readinessProbe"]
        assert readiness.get("timeoutSeconds", 1) >= READINESS_TIMEOUT_MIN_S, (
            f"{name}: readiness gives up after {readiness.get('timeoutSeconds', 1)} s"
        )
    guide = (DEPLOY / "OPERATIONS.md").read_text()
    assert "tcpSocket" in guide and "hung Redis" in guide, "OPERATIONS.md explains the probes"


def _models_mounts(container: dict) -> list[dict]:
    return [m for m in container.get("volumeMounts", []) if m["name"] == "models"]


def test_only_qa_api_mounts_the_models_volume_writable(k8s_docs) -> None:
    """qa-api publishes bot versions (admin KB edits, the review queue) and is where
    OPERATIONS.md runs `threefold models rollback`; every other app only reads the registry."""
    writable = set()
    for workload in _objects(k8s_docs, "Deployment"):
        spec = _pod_spec(workload)
        for container in spec.get("initContainers", []) + spec["containers"]:
            if any(not mount.get("readOnly") for mount in _models_mounts(container)):
                writable.add(f"{workload['metadata']['name']}/{container['name']}")
    assert writable == {"qa-api/qa-api"}


def _pod_templates(docs: list[dict]) -> dict[str, dict]:
    """name -> pod template of every workload, Job and CronJob."""
    templates = {}
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            templates[doc["metadata"]["name"]] = doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            templates[doc["metadata"]["name"]] = doc["spec"]["jobTemplate"]["spec"]["template"]
    return templates


def test_one_node_overlay_keeps_every_models_pod_on_the_node_of_the_claim() -> None:
    """A ReadWriteOnce claim mounts on one node only: a pod scheduled elsewhere would wait
    for ever (Multi-Attach). The overlay makes the claim RWO and requires each pod that
    mounts it beside the other threefold pods; the spread constraints stay soft."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` check not run")
    done = _run([kubectl, "kustomize", str(ONE_NODE_OVERLAY)], timeout=60)
    assert done.returncode == 0, done.stderr
    docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    [claim] = [doc for doc in docs if doc["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    templates = _pod_templates(docs)
    using = {
        name: template
        for name, template in templates.items()
        if any("persistentVolumeClaim" in v for v in template["spec"].get("volumes", []))
    }
    assert {"qa-api", "recs-api", "dashboard", "alerts-consumer", "init-models"} <= set(using)
    for name, template in using.items():
        spec = template["spec"]
        [term] = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname", name
        selector = term["labelSelector"]["matchLabels"]
        # matching its own labels lets the first such pod schedule on any node
        assert selector.items() <= template["metadata"]["labels"].items(), name
        for constraint in spec.get("topologySpreadConstraints", []):
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway", name


def test_web_probe_path_answers_while_redis_is_not_configured(monkeypatch) -> None:
    _require_module("threefold.apps.alerts.web")
    from threefold.apps.alerts.web import create_app

    monkeypatch.delenv("REDIS_URL", raising=False)
    client = create_app().test_client()
    assert client.get("/healthz").status_code == 503
    assert client.get(PROBE_PATH).status_code == 200


def test_k8s_replicated_deployments_have_a_disruption_budget(k8s_docs) -> None:
    """A node drain must not evict every replica at once, nor be blocked for good."""
    budgets = _objects(k8s_docs, "PodDisruptionBudget")
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for workload in _objects(k8s_docs, "Deployment"):
        replicas = workload["spec"].get("replicas", 1)
        if replicas < 2:
            continue
        labels = workload["spec"]["template"]["metadata"]["labels"]
        name = workload["metadata"]["name"]
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, f"{name}: {len(matching)} PodDisruptionBudgets"
        [budget] = matching
        assert budget["apiVersion"] == "policy/v1"
        spec = budget["spec"]
        if "minAvailable" in spec:
            assert 1 <= int(spec["minAvailable"]) < replicas, name
        else:
            assert int(spec["maxUnavailable"]) >= 1, name
    files = {
        f for f, docs in k8s_docs.items() if any(d["kind"] == "PodDisruptionBudget" for d in docs)
    }
    assert files and files <= set(kustomization["resources"])


def test_k8s_threefold_containers_use_entrypoint_roles_and_config(k8s_docs) -> None:
    names = {doc["metadata"]["name"] for doc in _objects(k8s_docs, "ConfigMap")}
    claims = {doc["metadata"]["name"] for doc in _objects(k8s_docs, "PersistentVolumeClaim")}
    roles_seen = set()
    for workload in _workloads(k8s_docs) + _jobs(k8s_docs):
        spec = _pod_spec(workload)
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for container in spec.get("initContainers", []) + spec["containers"]:
            if not container["image"].startswith("threefold:"):
                continue
            roles_seen.add(container["args"][0])
            assert container["args"][0] in ROLES, container["args"]
            refs = [s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s]
            assert refs and set(refs) <= names
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/models" in mounts, f"{container['name']}: models volume"
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            if container in spec["containers"]:
                assert "/tmp" in mounts, "a read-only root needs a writable /tmp (HF_HOME)"
    assert roles_seen == ROLES


def test_k8s_resources_limit_torch_threads_to_the_cpu_limit(k8s_docs) -> None:
    for workload in _objects(k8s_docs, "Deployment"):
        for container in _pod_spec(workload)["containers"]:
            env = {item["name"]: item for item in container.get("env", [])}
            source = env["OMP_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]
            assert source["resource"] == "limits.cpu"
            assert "cpu" in container["resources"]["limits"]


def test_k8s_services_select_existing_workloads_and_ports(k8s_docs) -> None:
    workloads = _workloads(k8s_docs)
    for service in _objects(k8s_docs, "Service"):
        selector = service["spec"]["selector"]
        matches = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matches, f"Service {service['metadata']['name']} selects no workload"
        container_ports = {
            port.get("name")
            for w in matches
            for c in _pod_spec(w)["containers"]
            for port in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports
    service_names = {s["metadata"]["name"] for s in _objects(k8s_docs, "Service")}
    assert {"qa-api", "recs-api", "dashboard"} <= service_names


def test_k8s_hpa_targets_existing_deployments(k8s_docs) -> None:
    deployments = {d["metadata"]["name"] for d in _objects(k8s_docs, "Deployment")}
    hpas = _objects(k8s_docs, "HorizontalPodAutoscaler")
    assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas} == {"qa-api", "recs-api"}
    assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in hpas} <= deployments


def test_kustomization_lists_existing_manifests() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    for resource in listed:
        assert (K8S / resource).is_file(), f"kustomization lists missing {resource}"
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert present - listed == K8S_OPTIONAL
    text = (K8S / "kustomization.yaml").read_text()
    for optional in K8S_OPTIONAL:
        assert optional in text, f"say in kustomization.yaml why {optional} is left out"


def test_k8s_retrain_cronjob_runs_weekly_with_the_init_jobs_security_and_volume(k8s_docs) -> None:
    [cronjob] = k8s_docs["retrain-cronjob.yaml"]
    assert cronjob["kind"] == "CronJob" and cronjob["apiVersion"] == "batch/v1"
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    minute, hour, day, month, weekday = spec["schedule"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit(), "once a week"
    assert minute.isdigit() and hour.isdigit()
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    init = next(j for j in _objects(k8s_docs, "Job") if j["metadata"]["name"] == "init-models")
    init_pod = _pod_spec(init)
    assert pod["securityContext"] == init_pod["securityContext"]
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    [container] = pod["containers"]
    [init_container] = init_pod["containers"]
    assert container["securityContext"] == init_container["securityContext"]
    assert container["envFrom"] == init_container["envFrom"]
    assert container["args"][0] == "retrain" and set(container["args"][1:]) == set(APPS)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["models"] == {
        "name": "models",
        "persistentVolumeClaim": {"claimName": "threefold-models"},
    }
    [models] = [m for m in container["volumeMounts"] if m["name"] == "models"]
    assert models["mountPath"] == "/models" and not models.get("readOnly"), "publishes versions"
    [secrets] = [m for m in container["volumeMounts"] if m["name"] == "connection-secrets"]
    assert secrets["mountPath"] == SECRETS_MOUNT, "reads the signals from Redis, maybe over TLS"
    assert volumes["connection-secrets"]["secret"]["optional"] is True
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_kustomize_build_when_kubectl_available() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` check not run")
    done = _run([kubectl, "kustomize", str(K8S)], timeout=60)
    assert done.returncode == 0, done.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(done.stdout) if doc]
    assert kinds.count("Deployment") == 4 and kinds.count("Service") == 3


# ---------------------------------------------------------------- operator's guide


def test_operations_guide_covers_running_scaling_and_security() -> None:
    guide = (DEPLOY / "OPERATIONS.md").read_text()
    for topic in (
        "docker compose",
        "kubectl apply -k",
        "partitions",
        "faiss-gpu",
        "nvidia.com/gpu",
        "/metrics",
        "appendonly",
        "ADMIN_TOKEN",
        "ALLOWED_ORIGINS",
        "rollout restart",
        "retrain-cronjob.yaml",
        "state.json",
        "ReadWriteMany",
        "threefold models rollback",
        "threefold models prune",
        "THREEFOLD_QA_GATE_SET",
        "run --rm retrain",
    ):
        assert topic in guide, f"OPERATIONS.md does not mention {topic!r}"


def _kubernetes_steps(guide: str) -> list[str]:
    """The command lines of the guide's "Kubernetes" block under "Run it"."""
    block = guide.split("**Kubernetes**", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_operations_guide_creates_the_namespace_before_the_secret_in_every_cluster() -> None:
    """The Secret goes into the namespace: a production operator who skips the dev-only line
    must still create it first, or `kubectl -n threefold create secret` says NotFound."""
    steps = _kubernetes_steps((DEPLOY / "OPERATIONS.md").read_text())
    [namespace] = [i for i, line in enumerate(steps) if "namespace.yaml" in line]
    secret = next(i for i, line in enumerate(steps) if "create secret" in line)
    assert namespace < secret
    assert "dev" not in steps[namespace] and "dev-services" not in steps[namespace]


def test_no_doc_applies_threefold_manifests_around_kustomize() -> None:
    """`kubectl apply -f` on deploy/k8s (the folder, or a manifest running the threefold image)
    skips kustomization.yaml: the folder applies the dev Redis/Kafka too, and either runs
    `threefold:latest` instead of the image set with `kustomize edit set image`."""
    threefold_manifests = {
        path.name
        for path in K8S.glob("*.yaml")
        if re.search(r"^\s+image: threefold:", path.read_text(), re.MULTILINE)
    }
    assert "retrain-cronjob.yaml" in threefold_manifests
    docs = [DEPLOY / "OPERATIONS.md", ROOT / "README.md", *K8S.glob("*.yaml")]
    for doc in docs:
        text = doc.read_text()
        assert not re.search(r"apply -f deploy/k8s/?(?=[\s`)]|$)", text), (
            f"{doc.name}: `kubectl apply -f deploy/k8s/`"
        )
        for name in threefold_manifests:
            assert f"apply -f deploy/k8s/{name}" not in text, f"{doc.name}: -f {name}"
