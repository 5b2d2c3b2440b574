"""The intent model: fusion and calibration (pure), the built intent bot, save/load, retrain."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from threefold.apps.qa.bot import Bot
from threefold.apps.qa.bot_manager import BotManager
from threefold.apps.qa.builder import BuildOptions, build_bot
from threefold.apps.qa.intent_fusion import HeldOut, decline_cap, fit_fusion, signals, softmax
from threefold.apps.qa.knowledge_base import KnowledgeBase, entry_from_mapping
from threefold.apps.qa.policy import decide
from threefold.core.errors import ConfigError


def outcome(bot: Bot, query: str) -> tuple[str, str | None]:
    result = bot.retrieve(query)
    decision = decide(
        confidence=result.confidence,
        margin=result.ranking.margin,
        confidence_if_clear=result.confidence_if_clear,
        settings=bot.policy_settings(),
        small_talk=bot.small_talk.match(query, result.vector),
    )
    return decision.outcome, result.ranking.top.faq_id if result.ranking.top else None


def test_fused_score_mixes_probability_and_cosine_and_keeps_unknown_faqs_on_cosine() -> None:
    logits = np.array([[4.0, 0.0, -np.inf]])
    cosines = np.array([[0.5, 0.6, 0.9]])
    known = np.array([True, True, False])
    fused, best, features = signals(logits, cosines, known, alpha=0.5)
    probs = softmax(logits)
    assert probs[0, 2] == 0.0
    assert fused[0, 0] == pytest.approx(0.5 * probs[0, 0] + 0.25)
    assert fused[0, 2] == pytest.approx(0.9)  # an FAQ the classifier never saw: cosine only
    assert best[0] == 2
    assert features[0, 2] == pytest.approx(probs[0, 0])  # max probability
    assert features[0, 4] == pytest.approx(0.9)  # top retrieval cosine


def synthetic_held_out(rng: np.random.Generator, n: int = 200, faqs: int = 8) -> HeldOut:
    """Held-out messages whose logits point at their FAQ, and flat, far-away probes."""
    own = rng.integers(0, faqs, n)
    logits = rng.normal(0, 1, (n, faqs))
    logits[np.arange(n), own] += 5.0
    cosines = rng.uniform(0.2, 0.5, (n, faqs))
    cosines[np.arange(n), own] = rng.uniform(0.5, 0.9, n)
    return HeldOut(
        logits=logits,
        cosines=cosines,
        own=own,
        probe_logits=rng.normal(0, 1, (60, faqs)),
        probe_cosines=rng.uniform(0.0, 0.3, (60, faqs)),
    )


def test_fusion_is_calibrated_on_held_out_and_the_prior_moves_the_operating_point() -> None:
    held = synthetic_held_out(np.random.default_rng(0))
    known = np.ones(8, dtype=bool)
    fusion = fit_fusion(held, known, oos_prior=0.2)
    assert fusion.stats["held_out"] == 200 and fusion.stats["probes"] == 60
    assert fusion.stats["held_out_in_scope_accuracy"] >= 0.9
    assert fusion.stats["held_out_probe_recall"] >= 0.9
    _, _, features = signals(held.logits, held.cosines, known, fusion.alpha)
    _, _, probe_features = signals(held.probe_logits, held.probe_cosines, known, fusion.alpha)
    assert fusion.probabilities(features).mean() > 0.8
    assert fusion.probabilities(probe_features).mean() < 0.2
    cautious = fit_fusion(held, known, oos_prior=0.8)
    assert cautious.threshold >= fusion.threshold
    with pytest.raises(ConfigError, match="oos_prior must be within"):
        fit_fusion(held, known, oos_prior=1.0)


def test_decline_cap_declines_at_most_the_given_share_and_needs_enough_data() -> None:
    right = np.linspace(0.01, 1.0, 300)
    cap = decline_cap(right, 0.01)
    assert cap is not None and np.mean(right < cap) <= 0.01
    assert np.mean(right < np.nextafter(cap, 1.0)) > 0.01  # the highest such threshold
    assert decline_cap(right[:99], 0.01) is None  # fewer than 1 / 0.01 to measure it on
    assert decline_cap(right, 1.0) is None  # 1.0 turns the cap off


def test_cap_keeps_in_scope_accuracy_when_the_prior_would_decline_too_much() -> None:
    rng = np.random.default_rng(1)
    held = synthetic_held_out(rng, n=400)
    # a fifth of the paraphrases look unsure (flat logits, low cosine), like hard real questions
    unsure = rng.random(400) < 0.2
    held.logits[unsure] = rng.normal(0, 1, (int(unsure.sum()), 8))
    held.logits[unsure, held.own[unsure]] += 1.5
    held.cosines[unsure, held.own[unsure]] = 0.45
    known = np.ones(8, dtype=bool)
    uncapped = fit_fusion(held, known, oos_prior=0.5, max_declined=1.0)
    capped = fit_fusion(held, known, oos_prior=0.5, max_declined=0.01)
    assert uncapped.stats["decline_cap"] is None
    assert capped.stats["threshold_at_prior"] == pytest.approx(uncapped.threshold, abs=1e-4)
    assert capped.threshold == pytest.approx(capped.stats["decline_cap"], abs=1e-4)
    assert capped.threshold < uncapped.threshold
    _, best, features = signals(held.logits, held.cosines, known, capped.alpha)
    right = best == held.own
    declined = capped.probabilities(features)[right] < capped.threshold
    assert declined.mean() <= 0.01
    assert (uncapped.probabilities(features)[right] < uncapped.threshold).mean() > 0.01
    with pytest.raises(ConfigError, match="max_declined must be within"):
        fit_fusion(held, known, max_declined=0.0)


def test_intent_bot_is_built_from_paraphrases_and_answers_them(store_intent_bot: Bot) -> None:
    bot = store_intent_bot
    assert bot.intent is not None and bot.fusion is not None
    stats = bot.info.stats["intent"]
    assert stats["fusion"]["held_out"] > 10 and stats["fusion"]["probes"] > 10
    assert 0.0 < bot.threshold < 1.0
    assert outcome(bot, "how many business days does delivery take") == (
        "answer",
        "shipping_time",
    )
    assert outcome(bot, "I can't remember my login password") == ("answer", "password_reset")


@pytest.mark.parametrize("query", ["who won the world cup in 2018", "what's the weather in Paris"])
def test_intent_bot_declines_out_of_scope_questions(store_intent_bot: Bot, query: str) -> None:
    assert outcome(store_intent_bot, query)[0] in {"out_of_scope", "clarify"}
    assert store_intent_bot.retrieve(query).confidence < store_intent_bot.threshold


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Hi!", "greeting"),
        ("ok thanks", "thanks"),
        ("bye", "goodbye"),
        ("got it", "acknowledgement"),
    ],
)
def test_small_talk_is_its_own_outcome(store_intent_bot: Bot, message: str, kind: str) -> None:
    assert store_intent_bot.small_talk.match(message) == kind
    assert outcome(store_intent_bot, message)[0] == "small_talk"


def test_no_intent_model_keeps_the_retrieval_only_bot(store_bot: Bot) -> None:
    assert store_bot.intent is None and store_bot.fusion is None
    assert store_bot.threshold == store_bot.calibrator.threshold


def test_kb_without_paraphrases_builds_retrieval_only(embedder) -> None:
    kb = KnowledgeBase(
        entry_from_mapping({"id": f"f{i}", "question": q, "answer": "a"})
        for i, q in enumerate(["What are your hours?", "Do you ship abroad?", "Can I return?"])
    )
    assert build_bot(kb, embedder).intent is None


def test_intent_bot_saves_and_loads_back_the_same(
    store_intent_bot: Bot, tmp_path: Path, publish_copy
) -> None:
    store = publish_copy(store_intent_bot, tmp_path / "bot")
    loaded = store.load()
    assert loaded.intent is not None and loaded.fusion is not None
    assert loaded.fusion.to_dict() == store_intent_bot.fusion.to_dict()
    query = "is shipping free"
    assert loaded.retrieve(query).confidence == pytest.approx(
        store_intent_bot.retrieve(query).confidence, abs=1e-5
    )


def test_admin_edit_is_served_at_once_then_retrained_and_swapped(
    store_intent_bot: Bot, tmp_path: Path, publish_copy
) -> None:
    store = publish_copy(store_intent_bot, tmp_path / "bot")
    manager = BotManager(store)
    manager.reload()
    before = manager.bot
    new = entry_from_mapping(
        {
            "id": "pet_policy",
            "questions": ["Can I bring my dog into the store?", "Are pets allowed in your shops?"],
            "answer": "Dogs on a leash are welcome in all our stores.",
        }
    )
    version, _ = manager.edit(upserts=[new])
    edited = manager.bot
    assert edited.version == version and "pet_policy" not in edited.intent.labels
    assert edited.retrieve("Can I bring my dog into the store?").ranking.top.faq_id == "pet_policy"
    assert manager.wait_for_retrain(timeout=120)
    retrained = manager.bot
    assert retrained is not edited and retrained.version != version
    assert retrained.info.parent == version
    assert "pet_policy" in retrained.intent.labels
    assert outcome(retrained, "is my puppy allowed in the shop") == ("answer", "pet_policy")
    assert store.current_version() == retrained.version
    assert "pet_policy" not in before.kb  # the old snapshot was never changed
    # one rollback undoes the edit: the rebuild re-published the edited KB, so going back to
    # the edit's own version would have changed nothing
    assert manager.rollback() == before.version
    assert "pet_policy" not in manager.bot.kb


def test_a_question_added_to_an_faq_is_answered_before_the_background_rebuild(
    store_intent_bot: Bot, tmp_path: Path, publish_copy, make_app, admin_headers
) -> None:
    """The head has not seen the new paraphrase yet; its exact wording is still answered."""
    publish_copy(store_intent_bot, tmp_path / "intent-bot")
    app = make_app(bot_dir=str(tmp_path / "intent-bot"))
    app.extensions["threefold.qa"].manager.retrain_in_background = False  # stay in the window
    client = app.test_client()
    question = "My sneakers don't fit, what now?"
    entry = store_intent_bot.kb["exchange"].to_dict()
    entry["questions"] = [*entry["questions"], question]
    assert client.put("/api/kb/exchange", json=entry, headers=admin_headers).status_code == 200
    for asked in (question, "MY SNEAKERS DON'T FIT -- what now"):
        body = client.post("/api/chat", json={"message": asked}).get_json()
        assert (body["outcome"], body["faq_id"]) == ("answer", "exchange"), body


@pytest.mark.parametrize(
    "message", ["thanks! and how do I return shoes?", "Hi, how do I return shoes?"]
)
def test_small_talk_before_a_question_does_not_hide_the_question(
    store_intent_bot: Bot, tmp_path: Path, publish_copy, make_app, message: str
) -> None:
    publish_copy(store_intent_bot, tmp_path / "intent-bot")
    client = make_app(bot_dir=str(tmp_path / "intent-bot")).test_client()
    alone = client.post("/api/chat", json={"message": "How do I return shoes?"}).get_json()
    assert (alone["outcome"], alone["faq_id"]) == ("answer", "return_policy")
    body = client.post("/api/chat", json={"message": message}).get_json()
    assert (body["outcome"], body["faq_id"]) == ("answer", "return_policy"), body


def test_build_options_validate_the_intent_settings() -> None:
    with pytest.raises(ConfigError, match="oos_prior must be within"):
        BuildOptions(oos_prior=0.0)
    with pytest.raises(ConfigError, match="intent_holdout_share must be within"):
        BuildOptions(intent_holdout_share=1.0)
    with pytest.raises(ConfigError, match="max_declined must be within"):
        BuildOptions(max_declined=1.5)
    options = BuildOptions(oos_probes=("what is the weather",))
    assert BuildOptions.from_dict(options.to_dict()) == options


def test_large_kbs_fine_tune_the_embedder_by_default_and_small_ones_do_not(
    embedder, store_kb: KnowledgeBase, store_intent_bot: Bot, store_bot: Bot
) -> None:
    assert store_intent_bot.info.options["fine_tune"] is False  # below fine_tune_min_questions
    assert "fine_tune" not in store_intent_bot.info.stats
    # the same KB counted as large: the intent build fine-tunes a copy, the baseline does not
    options = BuildOptions(fine_tune_min_questions=1, fine_tune_max_steps=2)
    tuned = build_bot(store_kb, embedder, options)
    assert tuned.info.options["fine_tune"] is True
    assert tuned.info.stats["fine_tune"]["steps"] == 2
    assert tuned.embedder is not embedder
    baseline = build_bot(store_kb, embedder, replace(options, intent_model=False))
    assert baseline.info.options["fine_tune"] is False and baseline.embedder is embedder
    assert store_bot.info.options["fine_tune"] is False
