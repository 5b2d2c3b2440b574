"""Building bots: retrieval, calibration from held-out paraphrases, fallback, ambiguity, edits."""

from __future__ import annotations

import numpy as np
import pytest

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.builder import BuildOptions, apply_edits, build_bot
from threefold.apps.qa.calibration import DEFAULT_THRESHOLD
from threefold.apps.qa.knowledge_base import KnowledgeBase, entry_from_mapping
from threefold.apps.qa.policy import decide
from threefold.core.errors import ConfigError


def kb_of(*entries: tuple[str, list[str], str]) -> KnowledgeBase:
    return KnowledgeBase(
        entry_from_mapping({"id": i, "questions": qs, "answer": a}) for i, qs, a in entries
    )


def outcome(bot: Bot, query: str) -> tuple[str, str, str | None]:
    result = bot.retrieve(query)
    decision = decide(
        confidence=result.confidence,
        margin=result.ranking.margin,
        confidence_if_clear=result.confidence_if_clear,
        settings=bot.policy_settings(),
    )
    top = result.ranking.top.faq_id if result.ranking.top else None
    return decision.outcome, decision.reason, top


@pytest.mark.parametrize(
    ("query", "faq_id"),
    [
        ("how many business days does delivery take", "shipping_time"),
        ("my discount code is rejected", "promo_code"),
        ("I can't remember my login password", "password_reset"),
    ],
)
def test_unseen_paraphrase_is_answered_with_its_faq(
    store_bot: Bot, query: str, faq_id: str
) -> None:
    assert outcome(store_bot, query) == ("answer", "answered", faq_id)


def test_candidates_are_one_per_faq_best_first(store_bot: Bot) -> None:
    ranking = store_bot.retrieve("is shipping free", k=5).ranking
    assert len(ranking.ids) == len(set(ranking.ids)) == 5
    scores = [c.score for c in ranking.candidates]
    assert scores == sorted(scores, reverse=True)
    assert ranking.margin == pytest.approx(scores[0] - scores[1])


def test_calibration_is_fitted_on_held_out_paraphrases(store_bot: Bot) -> None:
    calibrator = store_bot.calibrator
    assert calibrator.source == "held-out"
    assert calibrator.stats["n_in_scope"] == store_bot.kb.n_questions
    assert calibrator.stats["n_out_of_scope"] > calibrator.stats["n_in_scope"]
    assert 0.0 < calibrator.threshold < 1.0
    assert store_bot.info.stats["held_out"] == store_bot.kb.n_questions


@pytest.mark.parametrize(
    "query", ["who won the world cup in 2018", "how do I bake sourdough bread"]
)
def test_out_of_scope_question_is_not_answered(store_bot: Bot, query: str) -> None:
    result = store_bot.retrieve(query)
    assert result.confidence < store_bot.calibrator.threshold
    assert outcome(store_bot, query)[0] == "out_of_scope"


def test_kb_with_one_question_per_id_builds_with_the_default_threshold(embedder) -> None:
    kb = kb_of(
        ("hours", ["What are your opening hours?"], "9 to 5."),
        ("returns", ["How do I return an item?"], "Within 30 days."),
        ("pay", ["Which payment methods do you accept?"], "Cards and PayPal."),
        ("ship", ["Do you ship abroad?"], "To the EU and Canada."),
    )
    bot = build_bot(kb, embedder)
    assert bot.calibrator.source == "default"
    assert bot.calibrator.threshold == DEFAULT_THRESHOLD
    assert bot.info.stats["held_out"] == 0
    assert outcome(bot, "what are the opening hours") == ("answer", "answered", "hours")
    assert outcome(bot, "tell me a joke about penguins")[0] == "out_of_scope"


def test_threshold_override_is_applied(embedder, store_kb: KnowledgeBase) -> None:
    bot = build_bot(store_kb, embedder, BuildOptions(threshold=0.999, generic_oos=False))
    assert bot.calibrator.threshold == 0.999
    assert bot.calibrator.stats["threshold_overridden"] is True
    assert outcome(bot, "can I pay with klarna in installments")[0] == "clarify"


def test_two_near_identical_faqs_make_the_bot_ask_which_one(embedder) -> None:
    kb = kb_of(
        ("reset_web", ["How do I reset my password on the website?"], "Use Forgot password."),
        ("reset_app", ["How do I reset my password in the app?"], "Tap Forgot password."),
        ("hours", ["What are your opening hours?"], "9 to 5."),
        ("ship", ["Do you ship abroad?"], "To the EU and Canada."),
    )
    bot = build_bot(kb, embedder)
    result = bot.retrieve("how do I reset my password")
    assert set(result.ranking.ids[:2]) == {"reset_web", "reset_app"}
    assert result.ranking.margin < bot.info.ambiguity_margin
    assert outcome(bot, "how do I reset my password")[:2] == ("clarify", "ambiguous")
    assert outcome(bot, "resetting my password in the mobile app")[2] == "reset_app"


def test_build_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="calibration 'platt' is not supported"):
        BuildOptions(calibration="platt")
    with pytest.raises(ConfigError, match="fine_tune_max_steps must be >= 1 or None, found 0"):
        BuildOptions(fine_tune_max_steps=0)


def test_edit_embeds_only_new_or_changed_texts(store_bot: Bot) -> None:
    entry = store_bot.kb["shipping_time"]
    changed = entry_from_mapping(
        {**entry.to_dict(), "answer": "Standard shipping now takes 2-4 business days."}
    )
    added = entry_from_mapping(
        {
            "id": "rentals",
            "questions": ["Do you rent furniture?", "Can I lease a sofa?"],
            "answer": "Not yet; sign up for news.",
        }
    )
    edited, stats = apply_edits(store_bot, upserts=[changed, added], deletes=["po_box"])
    assert (stats.embedded, stats.reused) == (1 + 3, len(entry.questions))
    assert (stats.upserted, stats.deleted) == (2, 1)
    assert "po_box#q0" not in edited.index and "rentals#q1" in edited.index
    assert edited.kb["shipping_time"].answer.startswith("Standard shipping now")
    assert edited.retrieve("can I lease a couch").ranking.top.faq_id == "rentals"
    # the original bot is untouched
    assert "po_box#q0" in store_bot.index and "rentals" not in store_bot.kb
    np.testing.assert_allclose(
        edited.index.get_vector("shipping_time#q0"), store_bot.index.get_vector("shipping_time#q0")
    )


@pytest.mark.slow
def test_fine_tuned_build_saves_and_reloads_its_embedder(embedder, tmp_path) -> None:
    from threefold.apps.qa.store import BotStore

    kb = kb_of(
        ("ship", ["How long is delivery?", "When does my order arrive?", "Shipping time?"], "3 d."),
        ("pay", ["Can I pay by card?", "Which payment methods?", "Do you take PayPal?"], "Yes."),
        ("ret", ["How do I return it?", "Can I send it back?", "Return policy?"], "30 days."),
        ("acct", ["How do I sign up?", "Create an account?", "Register on the site?"], "Sign up."),
    )
    before = embedder.model_id
    bot = build_bot(
        kb,
        embedder,
        BuildOptions(fine_tune=True, fine_tune_max_steps=3, fine_tune_batch_size=4),
    )
    assert embedder.model_id == before, "the shared embedder must not be fine-tuned in place"
    assert bot.info.embedder["source"] == "saved"
    assert bot.info.stats["fine_tune"]["steps"] == 3
    store = BotStore(tmp_path / "bot")
    store.publish(bot)
    assert (store.version_dir(store.current_version()) / "embedder").is_dir()
    loaded = store.load(embedder=embedder)
    weights = loaded.embedder.model_id.rpartition("@")[2]
    assert weights == bot.embedder.model_id.rpartition("@")[2] != before.rpartition("@")[2]
    query = "when will my parcel come"
    assert loaded.retrieve(query).ranking.ids == bot.retrieve(query).ranking.ids
