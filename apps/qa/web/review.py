"""The review queue: the /review page and /api/review/... (admin bearer token, audited).

`GET /api/review` lists the pending groups (declined questions clustered by meaning, thumbs-down
answers, agents' replies). One POST turns a group's items into paraphrases of an FAQ or into a
new FAQ (through the atomic KB edit, the calibration refitted in the background) or dismisses
them; either way they leave the queue.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request, send_from_directory
from flask.typing import ResponseReturnValue

from threefold.apps.qa.bot_manager import StaleBot
from threefold.apps.qa.knowledge_base import (
    MAX_QUESTION_CHARS,
    FaqEntry,
    KnowledgeBase,
    check_text,
)
from threefold.apps.qa.resources import EXTENSION_KEY, Resources
from threefold.apps.qa.review import (
    DEFAULT_LIMIT,
    ReviewItem,
    ReviewQueue,
    with_paraphrases,
)
from threefold.apps.qa.web.admin import (
    MAX_ADMIN_BODY,
    TOKEN_KEY,
    admin_audit,
    entry_from_body,
    refuse_shared_questions,
    require_shared_records,
    stale_bot_error,
)
from threefold.apps.qa.web.pages import STATIC_DIR
from threefold.core.audit import ADMIN
from threefold.core.errors import DataError
from threefold.core.web import ApiError, bearer_token_required, read_json_body

review_blueprint = Blueprint("qa_review", __name__)
review_blueprint.register_error_handler(StaleBot, stale_bot_error)
api = "/api/review"
MAX_LIMIT = 1000
ADD_TO_OWNER = f"add the items to {{owner!r}} instead ({api}/paraphrase), or "


def _resources() -> Resources:
    return current_app.extensions[EXTENSION_KEY]


def _queue() -> ReviewQueue:
    return ReviewQueue(_resources().feedback)


def _limit() -> int:
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(
            400,
            f"limit must be a whole number from 1 to {MAX_LIMIT}, found {raw[:20]!r}",
            field="limit",
        )
    return int(raw)


def _items(body: dict[str, Any]) -> list[ReviewItem]:
    ids = body.get("items")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ApiError(
            400,
            f"'items' must be a non-empty list of review item ids (strings), found {ids!r:.60}. "
            "Take them from item_ids of a group in GET /api/review",
            field="items",
        )
    try:
        found: list[ReviewItem] | DataError = _queue().find(ids)
    except DataError as exc:
        found = exc
    # read without Redis, every item would look reviewed already: 503, never a false 409
    require_shared_records(_resources(), "the review queue")
    if isinstance(found, DataError):
        raise ApiError(409, str(found), code="not_in_queue")
    return found


def _questions(body: dict[str, Any], items: list[ReviewItem]) -> list[str]:
    """The questions to add: `questions` from the body, else the items' own questions; each
    must be a valid FAQ question (`knowledge_base.check_text`)."""
    given = body.get("questions")
    if given is None:
        given = [item.question for item in items]
    elif not isinstance(given, list):
        raise ApiError(
            400,
            f"'questions' must be a list of texts (or leave it out to add the items' own "
            f"questions), found {type(given).__name__}",
            field="questions",
        )
    try:
        return [
            check_text(q, f"questions[{i}]", max_chars=MAX_QUESTION_CHARS)
            for i, q in enumerate(given)
        ]
    except ValueError as exc:
        raise ApiError(
            400, f"{exc}. Send 'questions' with the texts to add", field="questions"
        ) from None


def _record(action: str, items: int, **details: Any) -> None:
    """Audit the action and count it (qa_review_actions_total, qa_reviewed_items_total)."""
    admin_audit(f"review.{action}", items=items, **details)
    metrics = _resources().metrics
    if metrics is not None:
        metrics.observe_review(action, items)


class _NothingToAdd(Exception):
    """The FAQ has every question already: no edit to publish."""


def _paraphrased_faq(kb: KnowledgeBase, faq_id: str) -> str:
    """The stored id of the FAQ to add paraphrases to (also by another, NFC-equivalent
    spelling); 404 when there is none."""
    stored = kb.resolve_id(faq_id)
    if stored is None:
        raise ApiError(
            404,
            f"no FAQ with id {faq_id[:40]!r} to add paraphrases to. Pick an id from 'faqs' "
            "of GET /api/review, or create a new FAQ with POST /api/review/new-faq",
            code="unknown_faq",
            field="faq_id",
        )
    return stored


@review_blueprint.get("/review")
def review_page() -> ResponseReturnValue:
    """The review page (it signs in with the admin token, kept in the tab's sessionStorage)."""
    return send_from_directory(STATIC_DIR, "review.html")


@review_blueprint.get(api)
@bearer_token_required(TOKEN_KEY)
def list_groups() -> ResponseReturnValue:
    """Pending groups, biggest first; `?limit=` newest items of each kind (default 200)."""
    bot = _resources().manager.bot
    groups = _queue().groups(bot, limit=_limit())
    require_shared_records(_resources(), "the review queue")
    return jsonify(
        {
            "bot_version": bot.version,
            "count": sum(len(g.items) for g in groups),
            "groups": [g.to_json() for g in groups],
            "faqs": [{"id": e.id, "question": e.question} for e in bot.kb],
        }
    )


@review_blueprint.post(f"{api}/paraphrase")
@bearer_token_required(TOKEN_KEY)
def add_paraphrases() -> ResponseReturnValue:
    """`{"items": [...], "faq_id": ..., "questions"?: [...]}`: the questions join that FAQ."""
    body = read_json_body(max_bytes=MAX_ADMIN_BODY)
    items = _items(body)
    faq_id = body.get("faq_id")
    if not isinstance(faq_id, str):
        raise ApiError(
            400,
            f"'faq_id' must be an FAQ id (a JSON string), found {type(faq_id).__name__} "
            f"{faq_id!r:.40}. Pick an id from 'faqs' of GET /api/review",
            field="faq_id",
        )
    questions = _questions(body, items)
    stored: list[str] = []  # the FAQ's id as stored (exactly, else an NFC-equivalent spelling)
    added: list[str] = []

    def plan(kb: KnowledgeBase) -> tuple[list[FaqEntry], list[str]]:
        stored.append(_paraphrased_faq(kb, faq_id))
        refuse_shared_questions(kb, questions, stored[0], other_fix=ADD_TO_OWNER)
        entry = with_paraphrases(kb, stored[0], questions)
        added.extend(entry.questions[len(kb[stored[0]].questions) :])
        if not added:
            raise _NothingToAdd
        return [entry], []

    manager = _resources().manager  # checked and written on the newest KB, under the edit lock
    try:
        version, _ = manager.edit_with(plan, by=f"{ADMIN} (review)", recalibrate=True)
    except _NothingToAdd:
        version = manager.bot.version
    faq_id = stored[0]
    _queue().mark_reviewed(items, action="paraphrase", who=ADMIN, faq_id=faq_id, version=version)
    _record("paraphrase", len(items), faq_id=faq_id, version=version)
    return jsonify({"version": version, "faq_id": faq_id, "added": added, "reviewed": len(items)})


@review_blueprint.post(f"{api}/new-faq")
@bearer_token_required(TOKEN_KEY)
def add_faq() -> ResponseReturnValue:
    """`{"items": [...], "id": ..., "answer": ..., "category"?, "questions"?}`: a new FAQ whose
    questions are the items' (an agent's reply is a good answer to start from)."""
    body = read_json_body(max_bytes=MAX_ADMIN_BODY)
    items = _items(body)
    entry = entry_from_body({**body, "questions": _questions(body, items)})

    def plan(kb: KnowledgeBase) -> tuple[list[FaqEntry], list[str]]:
        taken = kb.resolve_id(entry.id)  # also by another spelling (NFC-equivalent)
        if taken is not None:
            raise ApiError(
                409,
                f"FAQ id {taken!r} exists; add the questions to it with POST "
                f"{api}/paraphrase, or pick a new id",
                code="faq_exists",
                field="id",
            )
        refuse_shared_questions(kb, entry.questions, entry.id, other_fix=ADD_TO_OWNER)
        return [entry], []

    manager = _resources().manager  # checked and written under the bot's edit lock
    version, _ = manager.edit_with(plan, by=f"{ADMIN} (review)", recalibrate=True)
    _queue().mark_reviewed(items, action="new_faq", who=ADMIN, faq_id=entry.id, version=version)
    _record("new_faq", len(items), faq_id=entry.id, version=version)
    return jsonify(
        {
            "version": version,
            "faq_id": entry.id,
            "added": list(entry.questions),
            "reviewed": len(items),
        }
    ), 201


@review_blueprint.post(f"{api}/dismiss")
@bearer_token_required(TOKEN_KEY)
def dismiss() -> ResponseReturnValue:
    """`{"items": [...]}`: nothing to learn from them; they leave the queue."""
    items = _items(read_json_body(max_bytes=MAX_ADMIN_BODY))
    _queue().mark_reviewed(items, action="dismiss", who=ADMIN)
    _record("dismiss", len(items))
    return jsonify({"reviewed": len(items)})
