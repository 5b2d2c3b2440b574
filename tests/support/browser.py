"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, and a live Flask server."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.servers import free_port

ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts"
SCREENSHOT_DIR = ARTIFACTS / "screenshots"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
AXE_DIR = ARTIFACTS / "node"
AXE_VERSION = "4.14.1"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A headless Chromium; skipped with the install hint when the system browser is absent."""
    executable = _chromium_path()
    if executable is None:
        pytest.skip("no system Chromium: `make browser-deps` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A fresh browser context and page per test (own storage, so tests never share sessions)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where browser tests save screenshots for inspection (tests/.artifacts/screenshots)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR


@pytest.fixture
def live_server() -> Iterator[Callable[[object], str]]:
    """`live_server(flask_app)` serves it in a thread on a free port and returns the base URL."""
    from werkzeug.serving import make_server

    servers = []

    def start(app) -> str:
        port = free_port()
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.shutdown()


def axe_source() -> str:
    """axe-core's script (pinned `AXE_VERSION`), npm-installed on first use into tests/.artifacts.

    Inject it with `page.add_script_tag(content=axe_source())`, then run `axe.run()`. Skips the
    calling test, saying why, when npm is missing or the install fails (e.g. no registry access).
    """
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    AXE_DIR.mkdir(parents=True, exist_ok=True)
    with (AXE_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers install once
        if not _axe_installed(script):
            _npm_install_axe()
        if not _axe_installed(script):
            pytest.skip(f"npm installed no axe-core {AXE_VERSION} under {AXE_DIR}")
    return script.read_text(encoding="utf-8")


def _axe_installed(script: Path) -> bool:
    package = script.with_name("package.json")
    return script.is_file() and f'"version": "{AXE_VERSION}"' in package.read_text("utf-8")


def _npm_install_axe() -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("no npm to install axe-core: `make browser-deps` installs Debian's npm")
    spec = f"axe-core@{AXE_VERSION}"
    command = [npm, "install", "--prefix", str(AXE_DIR), "--no-save", "--no-audit", "--no-fund"]
    try:
        done = subprocess.run(
            [*command, "--loglevel=error", spec], capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"`npm install {spec}` took over 300 s (no registry access?)")
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        said = " ".join(line for line in lines[:3] if "complete log" not in line) or "no output"
        pytest.skip(f"`npm install {spec}` failed (no registry access?): {said}")


AXE_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => v.id + " (" + v.impact + "): " + v.help + " -> " +
    v.nodes.map((n) => n.target.join(" ") + ": " + n.failureSummary).join(" | "));
}"""


def axe_violations(page) -> list[str]:
    """axe-core's violations on the page as it is now, one readable line each (empty when clean)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe_source())
    return list(page.evaluate(AXE_RUN))


def copy_to_docs(path: Path) -> None:
    """Refresh the README's copy of a screenshot, only with UPDATE_DOCS_SCREENSHOTS=1.

    Plain test runs leave the committed PNGs (and git) untouched.
    """
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)


def save_screenshot(page, screenshot_dir: Path, name: str, *, docs: bool = False) -> Path:
    """Save a screenshot under `screenshot_dir`; with `docs`, also into docs/screenshots when
    UPDATE_DOCS_SCREENSHOTS=1 (the README's PNGs; plain runs leave git clean)."""
    path = screenshot_dir / name
    page.screenshot(path=str(path), scale="css")
    if docs:
        copy_to_docs(path)
    return path


def page_problems(page) -> list[str]:
    """Start recording console errors and failed (>= 400) responses of `page`; returns the list
    that fills as the page runs (a missing favicon shows up here as a 404)."""
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"console error: {m.text}") if m.type == "error" else None,
    )
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None,
    )
    return problems
