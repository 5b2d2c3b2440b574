"""deploy/constraints.txt: images install the dependency versions the test suite passed with.

Checked offline (no container engine here): the lock pins every runtime dependency of
pyproject.toml and of the extras the images install, within pyproject's ranges, with the pins
satisfying each other's requirements; it leaves torch and the CUDA libraries to TORCH_SPEC; the
Dockerfile passes it to every pip install of the project's dependencies; and it matches this
environment. That last check fails in a virtualenv marked as the lock's reference (the one
`make lock` took it from, or one `make venv` installed from it with the default torch, as CI's
is) and is a skip that lists the differences in any other (`make venv LOCKED=` resolves the
newest releases; a CUDA torch brings other builds).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from collections import defaultdict
from pathlib import Path, PurePosixPath
from types import ModuleType

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from support.dockerfile import dockerfile_global_args, dockerfile_stages

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LOCK_PATH = "deploy/constraints.txt"
# pip installs in the Dockerfile that take no lock, and why.
UNLOCKED_INSTALLS = {
    ("${TORCH_SPEC}",): "torch: TORCH_SPEC picks the build (and its index)",
    ("--upgrade", "pip", "setuptools", "wheel"): "the installer itself, before the project",
}
PIP_INSTALL = re.compile(r"\bpip install (?P<args>[^&;|]*)")


@pytest.fixture(scope="module")
def locking() -> ModuleType:
    """deploy/lock.py, the script `make lock` runs."""
    spec = importlib.util.spec_from_file_location("threefold_deploy_lock", DEPLOY / "lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lock(locking: ModuleType):
    return locking.read()


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _image_extras() -> set[str]:
    """The extras an image build installs: the Dockerfile's default and the GPU override's."""
    default = dockerfile_stages()[0]["steps"]
    extras = next(a for i, a in default if i == "ARG" and a.startswith("EXTRAS="))
    names = set(extras.split("=", 1)[1].strip('"').split(","))
    gpu = yaml.safe_load((DEPLOY / "compose.gpu.yaml").read_text())["x-cuda-build"]["args"]
    return names | set(gpu["EXTRAS"].split(","))


def _torch_spec_defaults() -> dict[str, str]:
    """Where a build picks torch, and its default spec there."""
    build = dockerfile_stages()[0]["steps"]
    dockerfile = next(a for i, a in build if i == "ARG" and a.startswith("TORCH_SPEC="))
    gpu = yaml.safe_load((DEPLOY / "compose.gpu.yaml").read_text())["x-cuda-build"]["args"]
    makefile = re.search(r"^TORCH_SPEC \?= (.+)$", (ROOT / "Makefile").read_text(), re.M)
    return {
        "deploy/Dockerfile (CPU image)": dockerfile.split("=", 1)[1].strip('"'),
        "deploy/compose.gpu.yaml (CUDA image)": re.sub(
            r"\$\{\w+:-(.*)\}", r"\1", gpu["TORCH_SPEC"]
        ),
        "Makefile (the tested virtualenv)": makefile[1],
    }


# ---------------------------------------------------------------- the lock itself


def test_every_dependency_an_image_installs_is_pinned_within_pyproject_ranges(
    locking: ModuleType, lock
) -> None:
    project = _pyproject()
    extras = _image_extras()
    assert extras <= set(project["optional-dependencies"]), extras
    assert extras <= set(locking.IMAGE_EXTRAS), (
        f"images install the extras {sorted(extras)}; `make lock` pins {locking.IMAGE_EXTRAS}: "
        "add the others to IMAGE_EXTRAS in deploy/lock.py"
    )
    declared = [("dependencies", text) for text in project["dependencies"]] + [
        (f"extra {extra!r}", text)
        for extra in sorted(extras)
        for text in project["optional-dependencies"][extra]
    ]
    problems = []
    for where, text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "torch":
            continue  # TORCH_SPEC: test_torch_spec_defaults_install_the_torch_the_suite_passed_with
        if name not in lock.pins:
            problems.append(f"{name} ({where}) is not pinned")
        elif not requirement.specifier.contains(lock.pins[name], prereleases=True):
            problems.append(f"{name}=={lock.pins[name]} is outside pyproject's {text!r} ({where})")
    assert not problems, f"{LOCK_PATH} against pyproject.toml: {problems}; run `make lock`"


def test_pins_satisfy_each_others_requirements(locking: ModuleType, lock) -> None:
    """Read from the installed metadata of each pin installed here at its pinned version."""
    requested: dict[str, set[str]] = defaultdict(set)
    for text in _pyproject()["dependencies"]:
        requirement = Requirement(text)
        requested[canonicalize_name(requirement.name)] |= set(requirement.extras)
    checked = {
        name for name, version in lock.pins.items() if locking.installed_version(name) == version
    }
    if not checked:
        pytest.skip("no pinned package is installed here at its pinned version")
    changed = True
    while changed:  # extras asked for by a pin (kafka-python[lz4]) add requirements of their own
        changed = False
        for name in checked:
            for requirement in locking.active_requirements(name, requested[name]):
                wanted = canonicalize_name(requirement.name)
                if not set(requirement.extras) <= requested[wanted]:
                    requested[wanted] |= set(requirement.extras)
                    changed = True
    problems = []
    for name in sorted(checked):
        for requirement in locking.active_requirements(name, requested[name]):
            wanted = canonicalize_name(requirement.name)
            if wanted == "torch":
                if not requirement.specifier.contains(Version(lock.torch), prereleases=True):
                    problems.append(f"{name} needs {requirement}; the suite ran torch {lock.torch}")
            elif locking.is_unpinned(wanted):
                continue
            elif wanted not in lock.pins:
                problems.append(f"{name}=={lock.pins[name]} needs {requirement}: not pinned")
            elif not requirement.specifier.contains(lock.pins[wanted], prereleases=True):
                problems.append(f"{name} needs {requirement}; pinned {wanted}=={lock.pins[wanted]}")
    assert not problems, f"{LOCK_PATH} is not consistent: {problems}; run `make lock`"


def test_torch_and_the_cuda_libraries_are_left_to_torch_spec(lock) -> None:
    """A CUDA torch pins its nvidia-*/cuda-*/triton builds exactly; a pin here would clash."""
    owned_by_torch = [
        name
        for name in lock.pins
        if name in {"torch", "triton"} or name.startswith(("nvidia-", "cuda-", "pytorch-triton"))
    ]
    assert not owned_by_torch, f"{LOCK_PATH} pins {owned_by_torch}: leave them to TORCH_SPEC"


def test_faiss_gpu_is_pinned_to_the_faiss_cpu_release(lock) -> None:
    """The gpu extra swaps faiss-cpu for faiss-gpu: the same faiss, API and index format."""
    assert lock.pins.get("faiss-gpu") == lock.pins["faiss-cpu"], (
        f"faiss-gpu=={lock.pins.get('faiss-gpu')} but faiss-cpu=={lock.pins['faiss-cpu']}"
    )


def test_lock_was_taken_on_the_image_python(lock) -> None:
    """Environment markers (python_version) were evaluated for the lock's Python."""
    image = dockerfile_global_args()["PYTHON_IMAGE"]
    match = re.fullmatch(r"python:(\d+\.\d+)[.-]\S*", image)
    assert match, f"PYTHON_IMAGE={image}: expected python:X.Y-..."
    assert match[1] == lock.python, (
        f"the image runs Python {match[1]}, {LOCK_PATH} was taken on {lock.python}: "
        f"run `make lock` from a Python {match[1]} virtualenv"
    )


def test_python_floor_is_the_lock_python(lock) -> None:
    """`make venv` installs the lock, whose pins (numpy, pandas, scipy...) have no builds for an
    older Python: pyproject's requires-python and the README promise none."""
    assert _pyproject()["requires-python"] == f">={lock.python}"
    readme = (ROOT / "README.md").read_text()
    promised = set(re.findall(r"Python (\d+\.\d+)\+", readme))
    assert promised == {lock.python}, f"README promises Python {sorted(promised)}+"


def test_torch_spec_defaults_install_the_torch_the_suite_passed_with(lock) -> None:
    release = Version(lock.torch).public
    for where, spec in _torch_spec_defaults().items():
        pinned = re.match(r"torch==(\S+)", spec)
        assert pinned and pinned[1] == release, (
            f"{where}: TORCH_SPEC {spec!r}; the suite passed with torch {lock.torch} "
            f"({LOCK_PATH}): expected torch=={release}"
        )


def test_lock_is_what_make_lock_writes(locking: ModuleType, lock) -> None:
    """Sorted canonical `name==version` lines and the header: no hand edits."""
    text = (DEPLOY / "constraints.txt").read_text()
    assert locking.render(lock) == text, f"{LOCK_PATH} was edited by hand: run `make lock`"


def test_a_malformed_lock_line_is_refused_with_its_place(locking: ModuleType) -> None:
    text = "# python: 3.11\n# torch: 2.13.0\nnumpy>=2\n"
    with pytest.raises(locking.LockError, match=r"constraints\.txt:3: expected `name==version`"):
        locking.parse(text)


# ---------------------------------------------------------------- the Dockerfile uses it


def _pip_installs(run: str) -> list[list[str]]:
    return [shlex.split(match["args"]) for match in PIP_INSTALL.finditer(run)]


def _constraint_files(argv: list[str]) -> list[str]:
    files = []
    for index, word in enumerate(argv):
        if word in {"-c", "--constraint"} and index + 1 < len(argv):
            files.append(argv[index + 1])
        elif word.startswith("--constraint="):
            files.append(word.split("=", 1)[1])
    return files


def _build_pip_installs() -> list[tuple[list[str], list[str]]]:
    """Each pip install of the build stage: (argv, what each of its -c files was made from).

    A -c file is the repository path COPY put there, or `torch` when the same RUN wrote it
    from the installed torch's version."""
    workdir, copied = PurePosixPath("/"), {}
    installs = []
    for instruction, args in dockerfile_stages()[0]["steps"]:
        if instruction == "WORKDIR":
            workdir = workdir / args
        elif instruction == "COPY" and "--from=" not in args:
            *sources, target = [part for part in args.split() if not part.startswith("--")]
            for source in sources:
                into = workdir / target
                copied[into / PurePosixPath(source).name if target.endswith("/") else into] = source
        elif instruction == "RUN":
            for argv in _pip_installs(args):
                origins = []
                for path in (workdir / name for name in _constraint_files(argv)):
                    written = rf"version\('torch'\).*>\s*{re.escape(str(path))}"
                    origins.append("torch" if re.search(written, args) else copied.get(path, "?"))
                installs.append((argv, origins))
    return installs


def test_every_pip_install_of_project_dependencies_takes_the_lock() -> None:
    checked = []
    for argv, origins in _build_pip_installs():
        if tuple(argv) in UNLOCKED_INSTALLS:
            continue
        assert LOCK_PATH in origins, (
            f"pip install {shlex.join(argv)}: no -c file copied from {LOCK_PATH} "
            f"(its -c files come from {origins}; '?': not copied into the image)"
        )
        checked.append(argv)
    faiss_gpu = [argv for argv in checked if "faiss-gpu" in argv]
    project = [argv for argv in checked if any(word.startswith(".[") for word in argv)]
    assert faiss_gpu and project, f"expected the project install and faiss-gpu's: {checked}"


def test_the_project_install_keeps_the_torch_spec_build() -> None:
    """A dependency wanting another torch must fail the build, not swap in PyPI's build."""
    projects = [(a, o) for a, o in _build_pip_installs() if any(w.startswith(".[") for w in a)]
    assert projects, "no `pip install .[...]` in the build stage"
    for argv, origins in projects:
        assert "torch" in origins, f"pip install {shlex.join(argv)}: no -c with the installed torch"


# ---------------------------------------------------------------- the lock and this environment


def _differences(lock, here) -> list[str]:
    found = [
        f"{key}: {LOCK_PATH} says {ours}, this environment has {theirs}"
        for key, ours, theirs in (
            ("python", lock.python, here.python),
            ("torch", lock.torch, here.torch),
        )
        if ours != theirs
    ]
    for name in sorted(lock.pins.keys() | here.pins.keys()):
        pinned, installed = lock.pins.get(name), here.pins.get(name)
        if pinned is None:
            found.append(f"{name}: needed here ({installed}), not pinned")
        elif installed is None:
            found.append(f"{name}: pinned {pinned}, not needed here")
        elif pinned != installed:
            found.append(f"{name}: pinned {pinned}, installed {installed}")
    return found


def test_lock_matches_the_environment_the_suite_runs_in(locking: ModuleType, lock) -> None:
    reference = Path(sys.prefix) / locking.REFERENCE_MARKER
    try:
        differences = _differences(lock, locking.current_lock())
    except locking.LockError as error:
        differences = [str(error)]
    if not differences:
        return
    if reference.exists():
        pytest.fail(
            f"this virtualenv is the reference of {LOCK_PATH} ({reference}) and has drifted: "
            f"images would install other versions than this suite runs with: {differences}. "
            f"Once the suite passes here, `make lock` pins this environment; to test what "
            f"images install instead: .venv/bin/pip install -c {LOCK_PATH} -e '.[dev]'"
        )
    pytest.skip(
        f"this environment differs from {LOCK_PATH} (not its reference: no {reference}), "
        f"so this run does not vouch for the images' versions: {differences}"
    )


def test_make_venv_installs_the_locked_versions_and_marks_the_venv(locking: ModuleType) -> None:
    """CI's fresh venv (`make test`) runs on the lock's versions, so the check above runs there."""
    makefile = (ROOT / "Makefile").read_text()
    assert f"LOCKED ?= -c {LOCK_PATH}" in makefile, "make venv no longer installs with the lock"
    assert re.search(r"pip install .*\$\(LOCKED\) -e '\.\[dev\]'", makefile), makefile
    assert f"LOCK_MARKER := {locking.REFERENCE_MARKER}" in makefile, (
        f"the Makefile's marker is not deploy/lock.py's REFERENCE_MARKER "
        f"({locking.REFERENCE_MARKER}): the drift check would skip in CI"
    )
