"""`threefold demo --check`: exercise each running app once, as a client would.

Each check returns a CheckResult; a check never raises, it reports what it expected and found.
The QA check sends the storefront's Origin, so it also proves that the chat widget embedded
in the storefront (the recs app's /store) may call the QA API; the recs check reads that page.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HTTP_TIMEOUT_S = 30.0


@dataclass
class CheckResult:
    app: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.app}: {self.detail}"


class CheckFailed(Exception):
    """What a check expected and what it found."""


def http_json(
    url: str, *, body: dict | None = None, origin: str | None = None, token: str | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """GET (or POST `body`) a JSON endpoint; returns (json, headers); CheckFailed on non-2xx."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if origin:
        headers["Origin"] = origin
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")[:300]
        raise CheckFailed(f"{url} answered HTTP {exc.code}: {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CheckFailed(f"{url} did not answer: {exc}") from None
    except ValueError:
        raise CheckFailed(f"{url} did not answer JSON") from None


def http_text(url: str) -> str:
    """GET a page's text; CheckFailed when it does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        raise CheckFailed(f"{url} did not answer: {exc}") from None


def _require_cors(headers: dict[str, str], origin: str | None, what: str) -> None:
    if origin and headers.get("Access-Control-Allow-Origin") != origin:
        raise CheckFailed(
            f"{what} does not allow the storefront's origin {origin} (Access-Control-Allow-"
            f"Origin: {headers.get('Access-Control-Allow-Origin')!r}); "
            "its chat widget cannot call it"
        )


def _run(app: str, check: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(app, True, check())
    except CheckFailed as exc:
        return CheckResult(app, False, str(exc))
    except Exception as exc:  # a check reports every failure as a FAIL line
        return CheckResult(app, False, f"{type(exc).__name__}: {exc}")


def first_faq_question(kb_path: Path) -> tuple[str, str]:
    """(faq_id, question) of the knowledge base's first row."""
    from threefold.core.tables import read_records

    records = read_records(kb_path, required=("id", "question"), non_empty=("id", "question"))
    if not records:
        raise CheckFailed(f"{kb_path} has no FAQ rows")
    return str(records[0].values["id"]), str(records[0].values["question"])


def check_qa(base_url: str, kb_path: Path, origin: str | None) -> CheckResult:
    """A shipped FAQ question gets that FAQ's answer."""

    def run() -> str:
        faq_id, question = first_faq_question(kb_path)
        reply, headers = http_json(
            f"{base_url}/api/chat", body={"message": question}, origin=origin
        )
        if reply.get("faq_id") != faq_id or not reply.get("answer"):
            raise CheckFailed(
                f"asked {question!r}: expected an answer from FAQ {faq_id!r}, found faq_id="
                f"{reply.get('faq_id')!r}, answer={reply.get('answer')!r}, "
                f"confidence={reply.get('confidence')!r}"
            )
        _require_cors(headers, origin, "the QA API")
        return (
            f"{question!r} -> faq_id={faq_id} (confidence {float(reply['confidence']):.2f}): "
            f"{str(reply['answer'])[:60]}..."
        )

    return _run("qa", run)


def check_recs(base_url: str, *, chat_url: str) -> CheckResult:
    """A known shopper gets a personal recommendation list; /store embeds the chat widget."""

    def run() -> str:
        users, _ = http_json(f"{base_url}/api/users?limit=1")
        if not users.get("users"):
            raise CheckFailed("expected sample shoppers from /api/users, found none")
        user = users["users"][0]
        query = urlencode({"user_id": user, "k": 5})
        body, _ = http_json(f"{base_url}/api/recommendations?{query}")
        items = body.get("items") or []
        if not items or body.get("cold_start"):
            raise CheckFailed(
                f"expected a personal list for {user}, found {len(items)} items "
                f"(cold_start={body.get('cold_start')!r})"
            )
        widget = f'src="{chat_url}/static/widget.js"'
        if widget not in http_text(f"{base_url}/store"):
            raise CheckFailed(f"expected the storefront {base_url}/store to embed {widget}")
        titles = ", ".join(str(i.get("title")) for i in items[:3])
        return f"{len(items)} items for {user}: {titles}, ..."

    return _run("recs", run)


def check_alerts(
    alert: dict | None,
    topic: str,
    dashboard_url: str,
    *,
    problem: str = "",
    wait_s: float = 10.0,
) -> CheckResult:
    """An alert is on the alerts topic (else `problem` says why not) and the dashboard lists it."""

    def run() -> str:
        if alert is None:
            raise CheckFailed(
                f"expected an alert on topic {topic!r}, found none: {problem or 'timed out'}"
            )
        alert_id = alert.get("alert_id")
        deadline = time.monotonic() + wait_s
        while True:
            listed, _ = http_json(f"{dashboard_url}/api/alerts?limit=50")
            if any(a.get("alert_id") == alert_id for a in listed.get("alerts", [])):
                break
            if time.monotonic() > deadline:
                raise CheckFailed(
                    f"alert {alert_id} is on topic {topic!r} but the dashboard does not list it"
                )
            time.sleep(0.5)
        return f"alert {alert_id} on topic {topic}: {alert.get('summary')}"

    return _run("alerts", run)


LOOP_QUESTION = "my box got eaten by the dog, what now"  # the sample store bot declines it
LOOP_TIMEOUT_S = 300.0


def check_learning_loop(
    base_url: str,
    admin_token: str,
    *,
    question: str = LOOP_QUESTION,
    timeout_s: float = LOOP_TIMEOUT_S,
) -> CheckResult:
    """One turn of the QA learning loop through the public and review APIs.

    A customer's question the bot declines shows up in the review queue; the admin reviews it
    into a paraphrase of the FAQ the bot suggests; the same question is then answered by a new
    bot version (the edit, then its recalibration, swapped in without a restart).
    """

    def run() -> str:
        declined, _ = http_json(f"{base_url}/api/chat", body={"message": question})
        if declined.get("outcome") == "answer":
            raise CheckFailed(
                f"{question!r} was already answered by bot {declined.get('bot_version')}; the "
                "loop needs a question the bot declines"
            )
        queue, _ = http_json(f"{base_url}/api/review", token=admin_token)
        group = next(
            (g for g in queue.get("groups", []) if question in g.get("questions", [])), None
        )
        if group is None or not group.get("suggested_faq"):
            raise CheckFailed(f"{question!r} is not in the review queue with a suggested FAQ")
        faq_id = group["suggested_faq"]["faq_id"]
        http_json(
            f"{base_url}/api/review/paraphrase",
            body={"items": group["item_ids"], "faq_id": faq_id},
            token=admin_token,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            reply, _ = http_json(f"{base_url}/api/chat", body={"message": question})
            if reply.get("outcome") == "answer" and reply.get("faq_id") == faq_id:
                break
            if time.monotonic() > deadline:
                raise CheckFailed(
                    f"{question!r} reviewed into FAQ {faq_id!r} but still not answered after "
                    f"{timeout_s:.0f} s (outcome {reply.get('outcome')!r}, bot "
                    f"{reply.get('bot_version')})"
                )
            time.sleep(2)
        return (
            f"{question!r} declined by bot {declined.get('bot_version')} -> reviewed into FAQ "
            f"{faq_id} -> answered by bot {reply.get('bot_version')} "
            f"(confidence {float(reply.get('confidence') or 0):.2f})"
        )

    return _run("learning loop", run)
