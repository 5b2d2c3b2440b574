"""`threefold demo` end to end, as a user runs it: a subprocess on embedded Redis and Kafka.

The two demo runs share one model cache (the first trains, the second reuses it). While the
demo runs, the tests record its redis-server and tansu child processes, and prove afterwards
that none outlived it. tests/apps/demo/test_models.py covers the model cache itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.browser import save_screenshot

SERVICE_NAMES = ("redis-server", "tansu")
# Generous safety nets so a broken demo fails instead of hanging the suite (not assertions).
CHECK_RUN_LIMIT_S = 1800
READY_LIMIT_S = 1200


def threefold_command() -> list[str]:
    """The console script of this interpreter's environment (what `make demo` runs)."""
    beside = Path(sys.executable).parent / "threefold"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("threefold")
    if found:
        return [found]
    return [sys.executable, "-c", "from threefold.apps.cli import main; main()"]


def demo_env() -> dict[str, str]:
    """The caller's environment without external services, so the demo embeds its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return env


def service_name(pid: int) -> str | None:
    """ "redis-server" or "tansu" when `pid` is a live (non-zombie) one of those, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    state = stat[stat.rindex(")") + 2 :].split()[0]
    if state == "Z":
        return None
    return next((name for name in SERVICE_NAMES if comm.startswith(name)), None)


def service_children(parent: int) -> dict[int, str]:
    """{pid: name} of the redis-server / tansu processes whose parent is `parent`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) != parent:
            continue
        name = service_name(int(entry.name))
        if name:
            found[int(entry.name)] = name
    return found


class ServiceWatch:
    """Records the service processes a running demo starts (polled in a thread)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.seen: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ServiceWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while self.process.poll() is None:
            self.seen.update(service_children(self.process.pid))
            if self._stop.wait(0.2):
                return


def assert_services_started_and_stopped(watch: ServiceWatch) -> None:
    """The demo started both services, and none of them outlived it."""
    assert sorted(set(watch.seen.values())) == sorted(SERVICE_NAMES), watch.seen
    deadline = time.monotonic() + 10
    alive = {pid: name for pid, name in watch.seen.items() if service_name(pid) == name}
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = {pid: name for pid, name in alive.items() if service_name(pid) == name}
    assert alive == {}, f"still running after the demo exited: {alive}"


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """One model cache for the session: the first demo run trains, later ones reuse it.

    $THREEFOLD_DEMO_TEST_CACHE names a cache to reuse across sessions (faster iteration).
    """
    reuse = os.environ.get("THREEFOLD_DEMO_TEST_CACHE")
    if reuse:
        return Path(reuse)
    return tmp_path_factory.mktemp("demo-cache")


@pytest.mark.slow
@pytest.mark.integration
def test_demo_check_passes_and_leaves_no_processes(demo_cache: Path) -> None:
    command = [*threefold_command(), "demo", "--check", "--cache-dir", str(demo_cache)]
    process = subprocess.Popen(
        command, env=demo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with ServiceWatch(process) as watch:
        try:
            stdout, stderr = process.communicate(timeout=CHECK_RUN_LIMIT_S)
        finally:
            if process.poll() is None:
                process.kill()
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    report = f"stdout:\n{result.stdout}\nstderr (end):\n{result.stderr[-6000:]}"
    assert result.returncode == 0, report
    lines = result.stdout.splitlines()
    for app in ("qa", "learning loop", "recs", "alerts"):
        assert any(line.startswith(f"PASS {app}: ") for line in lines), report
    assert not any(line.startswith("FAIL") for line in lines), report
    assert re.search(r"PASS qa: .* -> faq_id=\w+", result.stdout), report
    assert "ready" in lines
    assert re.search(
        r"PASS learning loop: .* declined by bot (\S+) -> reviewed into FAQ \w+ -> "
        r"answered by bot (?!\1 )\S+ ",
        result.stdout,
    ), report
    for stage in range(1, 9):
        assert f"[{stage}/8]" in result.stderr
    # every Kafka client is closed before the broker stops: none retries it at shutdown
    assert not re.search(r"(ERROR|WARNING) kafka\.", result.stderr), report
    assert_services_started_and_stopped(watch)


@pytest.fixture
def running_demo(
    demo_cache: Path, tmp_path: Path
) -> Iterator[tuple[dict[str, str], subprocess.Popen, Path]]:
    """`threefold demo` (interactive) until it prints "ready": ({name: url}, process, stderr)."""
    log = tmp_path / "demo-stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*threefold_command(), "demo", "--cache-dir", str(demo_cache)],
            env=demo_env(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    urls: dict[str, str] = {}
    timer = threading.Timer(READY_LIMIT_S, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            match = re.match(r"(\w[\w ]*?)\s+(http://\S+)", line)
            if match:
                urls[match.group(1)] = match.group(2)
            if line.strip() == "ready":
                break
    finally:
        timer.cancel()
    try:
        yield urls, process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.browser
def test_demo_pages_in_a_browser_then_sigterm_stops_everything(
    running_demo, page, screenshot_dir: Path
) -> None:
    urls, process, log = running_demo
    assert {"hub", "store", "dashboard", "chat test"} <= set(urls), log.read_text()[-6000:]
    with ServiceWatch(process) as watch:
        page.goto(urls["hub"])
        for name in ("Storefront", "FAQ bot: chat widget test page", "Sentiment alerts dashboard"):
            assert page.get_by_role("link", name=name).is_visible()
        hub_links = page.eval_on_selector_all("a", "links => links.map(a => a.href)")
        for name in ("store", "dashboard", "chat test"):  # every printed page is on the hub
            assert urls[name] in hub_links, (name, hub_links)
        page.screenshot(path=str(screenshot_dir / "demo_hub.png"), full_page=True)
        assert urls["agent"].endswith("/agent")  # printed with the demo agent's token
        page.get_by_role("link", name="agent console").click()
        page.get_by_label("Agent token").wait_for()

        page.goto(urls["store"])
        cards = page.locator("#recs .card")
        cards.first.wait_for()
        assert cards.count() >= 3
        loaded = page.locator("#recs").get_attribute("data-version")
        cards.first.click()  # POST /api/events, then a fresh list
        page.wait_for_function(
            "n => document.getElementById('recs').dataset.version !== n", arg=loaded
        )
        assert "Could not" not in page.locator("#status").inner_text()
        page.get_by_role("button", name=re.compile(r"^Open chat")).click()
        dialog = page.get_by_role("dialog")
        dialog.wait_for(state="visible")
        box = dialog.get_by_label("Your question")
        box.fill("Is shipping free?")
        box.press("Enter")
        answer = dialog.locator(".msg.bot[data-faq-id='shipping_cost']")
        answer.wait_for()
        assert "free on orders over $50" in answer.inner_text()
        page.set_viewport_size({"width": 1280, "height": 700})  # a small PNG for the README
        save_screenshot(page, screenshot_dir, "store-with-chat.png", docs=True)

        page.goto(urls["dashboard"])
        page.locator("#alerts li").first.wait_for()
        assert "Negative sentiment surge" in page.locator("#alerts").inner_text()
        page.screenshot(path=str(screenshot_dir / "demo_dashboard.png"), full_page=True)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()[-6000:]
    assert "demo: stopped everything" in log.read_text()
    assert_services_started_and_stopped(watch)
