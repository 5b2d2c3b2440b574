"""Admin endpoints (bearer token): knowledge-base CRUD, reload, rollback, feedback exports."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from threefold.apps.qa.bot_manager import StaleBot
from threefold.apps.qa.knowledge_base import (
    FaqEntry,
    InvalidEntry,
    KnowledgeBase,
    entry_from_mapping,
    id_text,
    normalized_id,
)
from threefold.apps.qa.resources import EXTENSION_KEY, Resources
from threefold.apps.qa.review import questions_of_other_faqs
from threefold.apps.qa.web.handoff_errors import RETRY_AFTER_S
from threefold.core.audit import AUDIT_LOG, audit
from threefold.core.errors import ModelError
from threefold.core.web import ApiError, bearer_token_required, read_json_body

TOKEN_KEY = "THREEFOLD_QA_ADMIN_TOKEN"
admin_blueprint = Blueprint("qa_admin", __name__, url_prefix="/api")


@admin_blueprint.errorhandler(StaleBot)
def stale_bot_error(error: StaleBot) -> ResponseReturnValue:
    """An edit refused because the current version could not be loaded here: a 409."""
    return ApiError(409, str(error), code="stale_bot").to_response()


MAX_ADMIN_BODY = 1_000_000
# /api/kb/<these> are other endpoints, with the methods they take
RESERVED_IDS = {"reload": ("POST",), "rollback": ("POST",), "versions": ("GET",)}
UNADDRESSABLE = re.compile(r"[/?%]")


def _resources() -> Resources:
    return current_app.extensions[EXTENSION_KEY]


def stored_faq_id(kb: KnowledgeBase, faq_id: str) -> str:
    """The id under which `kb` stores the FAQ that the URL id `faq_id` names (exactly, else by
    NFC-equivalence: `KnowledgeBase.resolve_id`); 404 when it has none."""
    stored = kb.resolve_id(faq_id)
    if stored is None:
        raise ApiError(404, f"no FAQ with id {faq_id!r}", code="unknown_faq")
    return stored


def entry_from_body(body: dict[str, Any], *, faq_id: str | None = None) -> FaqEntry:
    """The entry of a request body (`faq_id`: the URL's, used when the body has no id); 400
    naming the field when it breaks the contract (`knowledge_base.entry_from_mapping`).

    Its id is NFC-normalized, as new ids are stored, and must follow the id rule; a PUT to an
    FAQ already stored is `replacement_from_body`."""
    if faq_id is not None:
        faq_id = normalized_id(faq_id)
        body = {"id": faq_id, **body}
    try:
        entry = entry_from_mapping(body)
    except InvalidEntry as exc:
        raise ApiError(400, str(exc), field=exc.field) from None
    if faq_id is not None and entry.id != faq_id:
        if entry.id != faq_id.strip():
            raise ApiError(
                400, f"body id {entry.id!r} differs from the URL id {faq_id!r}", field="id"
            )
        raise ApiError(  # the stored id is trimmed
            400,
            f"the URL id {faq_id!r} has spaces around it; it would be stored as {entry.id!r}: "
            f"use PUT /api/kb/{entry.id}",
            field="id",
        )
    check_addressable(entry.id)
    return entry


def replacement_from_body(
    body: dict[str, Any], url_id: str, stored: str, kb: KnowledgeBase
) -> FaqEntry:
    """The new version of the FAQ stored as `stored` (which `url_id` names): the body checked
    as an entry, keeping the stored id. The id rule is for new ids: an FAQ saved before a rule
    was added (a no-break space, a '#' in its id) stays editable. A body id must name it too."""
    given = body.get("id", stored)
    try:
        given = id_text(given)
    except ValueError as exc:
        raise ApiError(400, str(exc), field="id") from None
    if stored not in (kb.resolve_id(given), kb.resolve_id(given.strip())):
        raise ApiError(400, f"body id {given!r} differs from the URL id {url_id!r}", field="id")
    try:
        return entry_from_mapping(body, stored_id=stored)
    except InvalidEntry as exc:
        raise ApiError(400, str(exc), field=exc.field) from None


def check_addressable(faq_id: str) -> None:
    """Refuse ids that GET/PUT/DELETE /api/kb/<id> could never reach again (or that clients
    would have to percent-encode); the 400 says what was found."""
    found = UNADDRESSABLE.search(faq_id)
    if found is not None:
        problem = f"it holds {found.group()!r}"
    elif faq_id in (".", ".."):
        problem = "it is a path step"
    elif faq_id in RESERVED_IDS:
        problem = f"/api/kb/{faq_id} is another endpoint"
    else:
        return
    raise ApiError(
        400,
        f"FAQ id {faq_id[:40]!r} cannot be used in the URL /api/kb/<id>: {problem}. An id must "
        f"not contain '/', '?' or '%', be '.' or '..', or be one of {sorted(RESERVED_IDS)}. "
        "Pick another id, e.g. letters, digits, '_' and '-'",
        field="id",
    )


def refuse_shared_questions(
    kb: KnowledgeBase, questions: Sequence[str], faq_id: str, *, other_fix: str = ""
) -> None:
    """409 `question_in_another_faq` when one of the questions FAQ `faq_id` would get is
    already another FAQ's (`review.questions_of_other_faqs`): the KB would contradict itself.
    `other_fix`: a fix offered first, `{owner}` standing for that FAQ's id. Call it under the
    edit lock, on the KB the edit applies to."""
    taken = questions_of_other_faqs(kb, questions, faq_id)
    if taken:
        question, owner = next(iter(taken.items()))
        raise ApiError(
            409,
            f"{question[:80]!r} is already a question of FAQ {owner!r}. Fix: "
            f"{other_fix.format(owner=owner)}first remove it from {owner!r} (PUT /api/kb/"
            f"{owner}), or leave it out: under two FAQs, the bot could no longer tell which one "
            "it asks for and would ask the customer to choose",
            code="question_in_another_faq",
            faq_id=owner,
        )


def not_for_reserved_ids(view: Callable[..., ResponseReturnValue]) -> Callable[..., Any]:
    """405 (with Allow) for GET/PUT/DELETE /api/kb/reload and the like: these paths are other
    endpoints, not FAQs that do not exist."""

    @wraps(view)
    def wrapped(faq_id: str) -> ResponseReturnValue:
        allowed = RESERVED_IDS.get(faq_id)
        if allowed is None:
            return view(faq_id)
        response = ApiError(
            405,
            f"{request.method} is not allowed on /api/kb/{faq_id}; it takes {' or '.join(allowed)}",
        ).to_response()
        response.headers["Allow"] = ", ".join(allowed)
        return response

    return wrapped


def admin_audit(action: str, **details: Any) -> None:
    audit(action, store=lambda r: _resources().feedback.log.append(AUDIT_LOG, r), **details)


def _version_response(version: str, stats: Any, status: int = 200) -> ResponseReturnValue:
    return jsonify({"version": version, **stats.__dict__}), status


@admin_blueprint.get("/kb")
@bearer_token_required(TOKEN_KEY)
def list_entries() -> ResponseReturnValue:
    bot = _resources().manager.bot
    return jsonify({"version": bot.version, "count": len(bot.kb), "entries": bot.kb.to_json()})


@admin_blueprint.get("/kb/<faq_id>")
@not_for_reserved_ids
@bearer_token_required(TOKEN_KEY)
def get_entry(faq_id: str) -> ResponseReturnValue:
    kb = _resources().manager.bot.kb
    return jsonify(kb[stored_faq_id(kb, faq_id)].to_dict())


@admin_blueprint.post("/kb")
@bearer_token_required(TOKEN_KEY)
def create_entry() -> ResponseReturnValue:
    """Add one entry `{id, questions|question, answer, category?}`; 409 when the id exists
    (checked and written under the bot's edit lock: of two creates of one id, one is a 409) or
    a question is another FAQ's already."""
    entry = entry_from_body(read_json_body(max_bytes=MAX_ADMIN_BODY))

    def plan(kb: KnowledgeBase) -> tuple[list[FaqEntry], list[str]]:
        taken = kb.resolve_id(entry.id)  # also by another spelling
        if taken is not None:
            raise ApiError(409, f"FAQ id {taken!r} exists; use PUT /api/kb/{taken} to replace it")
        refuse_shared_questions(kb, entry.questions, entry.id)
        return [entry], []

    version, stats = _resources().manager.edit_with(plan)
    admin_audit("kb.create", faq_id=entry.id, version=version)
    return _version_response(version, stats, 201)


@admin_blueprint.put("/kb/<faq_id>")
@not_for_reserved_ids
@bearer_token_required(TOKEN_KEY)
def replace_entry(faq_id: str) -> ResponseReturnValue:
    """Create or replace the entry with this id; only changed texts are re-embedded.

    An FAQ already stored (also under another, NFC-equivalent spelling of the id, or under an
    id saved before today's id rule) is replaced and keeps its stored id, so its listed id,
    feedback and gate sets still name it; a new id follows the id rule and is stored
    NFC-normalized. Resolved and written under the bot's edit lock; 409 when a question it does
    not have yet is another FAQ's already."""
    body = read_json_body(max_bytes=MAX_ADMIN_BODY)
    written: list[FaqEntry] = []

    def plan(kb: KnowledgeBase) -> tuple[list[FaqEntry], list[str]]:
        stored = kb.resolve_id(faq_id)
        entry = (
            entry_from_body(body, faq_id=faq_id)
            if stored is None
            else replacement_from_body(body, faq_id, stored, kb)
        )
        refuse_shared_questions(kb, entry.questions, entry.id)
        written.append(entry)
        return [entry], []

    version, stats = _resources().manager.edit_with(plan)
    admin_audit("kb.replace", faq_id=written[0].id, version=version)
    return _version_response(version, stats)


@admin_blueprint.delete("/kb/<faq_id>")
@not_for_reserved_ids
@bearer_token_required(TOKEN_KEY)
def delete_entry(faq_id: str) -> ResponseReturnValue:
    deleted: list[str] = []

    def plan(kb: KnowledgeBase) -> tuple[list[FaqEntry], list[str]]:
        stored = stored_faq_id(kb, faq_id)
        if len(kb) == 1:
            raise ApiError(409, "cannot delete the last FAQ entry; a bot needs at least one")
        deleted.append(stored)
        return [], [stored]

    version, stats = _resources().manager.edit_with(plan)
    admin_audit("kb.delete", faq_id=deleted[0], version=version)
    return _version_response(version, stats)


@admin_blueprint.post("/kb/reload")
@bearer_token_required(TOKEN_KEY)
def reload_bot() -> ResponseReturnValue:
    """Swap in the bot directory's current version (e.g. after `threefold qa build`)."""
    try:
        version = _resources().manager.reload()
    except ModelError as exc:
        raise ApiError(409, f"reload failed, still serving the previous version: {exc}") from None
    admin_audit("kb.reload", version=version)
    return jsonify({"version": version})


@admin_blueprint.post("/kb/rollback")
@bearer_token_required(TOKEN_KEY)
def rollback_bot() -> ResponseReturnValue:
    """Re-activate the previously active version."""
    try:
        version = _resources().manager.rollback()
    except ModelError as exc:
        raise ApiError(409, str(exc)) from None
    admin_audit("kb.rollback", version=version)
    return jsonify({"version": version})


@admin_blueprint.get("/kb/versions")
@bearer_token_required(TOKEN_KEY)
def list_versions() -> ResponseReturnValue:
    store = _resources().manager.store
    return jsonify(
        {
            "current": store.current_version(),
            "serving": _resources().manager.bot.version,
            "versions": store.versions(),
            "history": store.history(),
        }
    )


def require_shared_records(resources: Resources, what: str) -> None:
    """503 + Retry-After when Redis did not answer the read just made: `what` would list only
    this worker's records of the outage, which reads as if the rest were gone."""
    if resources.degraded_reason() is not None:
        raise ApiError(
            503,
            f"Redis does not answer, so {what} would hold only this worker's records; try again "
            f"in {RETRY_AFTER_S} s",
            code="redis_unavailable",
            retry_after=RETRY_AFTER_S,
        )


def _csv(text: str, name: str) -> Response:
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={name}"},
    )


@admin_blueprint.get("/admin/feedback.csv")
@bearer_token_required(TOKEN_KEY)
def export_feedback() -> ResponseReturnValue:
    buffer = io.StringIO()
    _resources().feedback.export_feedback_csv(buffer)
    require_shared_records(_resources(), "the feedback export")
    return _csv(buffer.getvalue(), "feedback.csv")


@admin_blueprint.get("/admin/unanswered.csv")
@bearer_token_required(TOKEN_KEY)
def export_unanswered() -> ResponseReturnValue:
    buffer = io.StringIO()
    _resources().feedback.export_unanswered_csv(buffer)
    require_shared_records(_resources(), "the unanswered-questions export")
    return _csv(buffer.getvalue(), "unanswered.csv")
