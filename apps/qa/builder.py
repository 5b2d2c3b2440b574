"""Build a bot from a knowledge base (embed, index, calibrate) and apply incremental edits.

Calibration data comes from the KB itself:
- in-scope: paraphrases held out one at a time (leave-one-out: the query's own vector is masked,
  the other paraphrases of its FAQ stay), for FAQs with at least two questions;
- out-of-scope: the same held-out queries with their whole FAQ masked (a near-domain question
  the KB cannot answer), generic off-topic probes (dropped when they closely match a KB question,
  since they are then in scope for this KB) and any probes the caller passes (e.g. a file of real
  out-of-scope queries).
A KB with one question per FAQ has no in-scope held-out queries; the documented default curve
and threshold of `calibration.py` are used then.

Intent model (on by default when the KB has paraphrases, `intent_model=False` turns it off): a
share of each FAQ's paraphrases (`intent_holdout_share`, at least one, up to `holdout_max` in
all) is held out, the intent head is trained on the rest, and the held-out paraphrases, their
masked-FAQ near-misses and the probes fit the fusion (alpha, confidence curve, threshold at
`oos_prior`, capped by `max_declined`; see `intent_fusion`). The head the bot serves is then
retrained on every question. With the intent model and a KB of at least
`fine_tune_min_questions` questions (1,000) the embedder is fine-tuned first by default
(`fine_tune=None`): contrastive steps on paraphrase pairs, held-out questions excluded, at most
`fine_tune_max_steps` (300: 3-6 minutes for CLINC150 on 2 cores). A smaller KB gives too few
pairs to move the encoder and would pay for its own copy of it (~90 MB per bot version). The
retrieval-only baseline keeps the frozen embedder unless `fine_tune=True`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from threefold.apps.qa.bot import DEFAULT_AMBIGUITY_MARGIN, Bot, BotInfo
from threefold.apps.qa.calibration import METHODS, fit_calibrator
from threefold.apps.qa.intent_fusion import (
    DEFAULT_MAX_DECLINED,
    DEFAULT_OOS_PRIOR,
    HeldOut,
    IntentFusion,
    fit_fusion,
)
from threefold.apps.qa.intent_model import (
    IntentHead,
    IntentTraining,
    check_stop,
    train_intent_head,
)
from threefold.apps.qa.knowledge_base import FaqEntry, KnowledgeBase
from threefold.apps.qa.retrieval import per_id_max, vector_id
from threefold.core.encoder import TextEncoder
from threefold.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from threefold.core.embedder import Embedder

logger = logging.getLogger(__name__)

# Off-topic questions a store's customers may type; used as out-of-scope calibration probes.
GENERIC_OOS_PROBES = (
    "what's the weather going to be like tomorrow",
    "tell me a joke",
    "who won the football match last night",
    "what is the capital of Mongolia",
    "how do I bake banana bread",
    "can you recommend a good book to read",
    "what is the meaning of life",
    "how tall is the Eiffel Tower",
    "what's 17 times 23",
    "who painted the Mona Lisa",
    "how do I change a car tire",
    "what time is it in Tokyo",
    "how many planets are in the solar system",
    "sing me a song",
    "what should I cook for dinner tonight",
    "how do I learn to play the guitar",
    "what are the symptoms of the flu",
    "how do I file my taxes",
    "when was the French Revolution",
    "how far is the moon from the earth",
    "what is the best programming language",
    "book me a flight to Chicago",
    "set an alarm for 7 am",
    "how do I get rid of ants in my kitchen",
    "is it going to rain this weekend",
    "what's the stock price of Apple today",
    "translate thank you into German",
    "how do I train my puppy to sit",
    "who is the president of Brazil",
    "what is quantum computing",
    "how many calories should I eat a day",
    "where can I watch the new Star Wars movie",
    "how do I fix a leaking faucet",
    "what's a good name for a cat",
    "how long do I boil an egg",
    "how do I renew my driver's license",
    "what are the rules of chess",
    "how do volcanoes form",
    "what's the population of Canada",
    "help me write a birthday message for my mom",
)


@dataclass
class BuildOptions:
    """Options of `build_bot`; `fine_tune=None` decides by the KB (see the module docstring)."""

    embed_answers: bool = True
    calibration: str = "logistic"
    threshold: float | None = None
    ambiguity_margin: float = DEFAULT_AMBIGUITY_MARGIN
    holdout_max: int = 2000
    oos_weight: float = 1.0
    generic_oos: bool = True
    oos_probes: tuple[str, ...] = ()
    generic_probe_max_similarity: float = 0.7
    min_positives: int = 10
    fine_tune: bool | None = None
    fine_tune_epochs: int = 1
    fine_tune_max_steps: int | None = 300
    fine_tune_min_questions: int = 1000
    fine_tune_batch_size: int = 32
    fine_tune_learning_rate: float = 2e-5
    intent_model: bool = True
    intent_holdout_share: float = 0.2
    intent_steps: int = 300
    oos_prior: float = DEFAULT_OOS_PRIOR
    max_declined: float = DEFAULT_MAX_DECLINED
    seed: int = 13

    def __post_init__(self) -> None:
        if self.calibration not in METHODS:
            raise ConfigError(
                f"calibration {self.calibration!r} is not supported; expected one of {METHODS}"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be within [0, 1], found {self.threshold}")
        if not 0.0 <= self.ambiguity_margin < 1.0:
            raise ConfigError(
                f"ambiguity_margin must be within [0, 1), found {self.ambiguity_margin}"
            )
        if self.holdout_max < 0:
            raise ConfigError(f"holdout_max must be >= 0, found {self.holdout_max}")
        if self.oos_weight < 0:
            raise ConfigError(f"oos_weight must be >= 0, found {self.oos_weight}")
        if self.fine_tune_max_steps is not None and self.fine_tune_max_steps < 1:
            raise ConfigError(
                f"fine_tune_max_steps must be >= 1 or None, found {self.fine_tune_max_steps}"
            )
        if self.fine_tune_epochs < 1:
            raise ConfigError(f"fine_tune_epochs must be >= 1, found {self.fine_tune_epochs}")
        if not 0.0 < self.intent_holdout_share < 1.0:
            raise ConfigError(
                f"intent_holdout_share must be within (0, 1), found {self.intent_holdout_share}"
            )
        if not 0.0 < self.oos_prior < 1.0:
            raise ConfigError(f"oos_prior must be within (0, 1), found {self.oos_prior}")
        if not 0.0 < self.max_declined <= 1.0:
            raise ConfigError(f"max_declined must be within (0, 1], found {self.max_declined}")
        self.oos_probes = tuple(self.oos_probes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options (bot.json); `from_dict` of it gives the same options back."""
        return asdict(self) | {"oos_probes": list(self.oos_probes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildOptions:
        """The options a bot was built with (a retrain in the background reuses them)."""
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        if not isinstance(values.get("oos_probes", ()), (list, tuple)):
            values.pop("oos_probes")  # bots built before the texts were kept recorded a count
        return cls(**values)


@dataclass
class _Layout:
    """The KB flattened into index rows, grouped by FAQ (rows of one FAQ are contiguous)."""

    texts: list[str]
    vector_ids: list[str]
    owner: np.ndarray  # row -> FAQ position
    group_starts: np.ndarray  # FAQ position -> first row
    question_rows: list[list[int]]  # FAQ position -> rows of its questions


def _layout(kb: KnowledgeBase, embed_answers: bool) -> _Layout:
    texts: list[str] = []
    vids: list[str] = []
    owner: list[int] = []
    starts: list[int] = []
    question_rows: list[list[int]] = []
    for position, entry in enumerate(kb):
        starts.append(len(texts))
        rows = []
        for key, text in entry.texts(with_answer=embed_answers):
            if key.startswith("q"):
                rows.append(len(texts))
            texts.append(text)
            vids.append(vector_id(entry.id, key))
            owner.append(position)
        question_rows.append(rows)
    return _Layout(texts, vids, np.asarray(owner), np.asarray(starts), question_rows)


def _choose_holdout(
    layout: _Layout,
    limit: int,
    rng: random.Random,
    *,
    per_faq: int | None = None,
    share: float | None = None,
) -> list[int]:
    """Rows to hold out: round-robin over FAQs with >= 2 questions, up to `limit` rows.

    Scoring is leave-one-out, so every paraphrase may be held out; `per_faq` caps it (when
    fine-tuning, held-out questions are kept out of training, so only one per FAQ is held out),
    `share` caps it to that share of the FAQ's questions (at least one; the intent model).
    """

    def cap(n: int) -> int | None:
        if share is not None:
            return max(1, int(n * share))
        return per_faq

    pools = [
        rng.sample(rows, len(rows))[: cap(len(rows))]
        for rows in layout.question_rows
        if len(rows) >= 2
    ]
    rng.shuffle(pools)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(p) for p in pools):
        for pool in pools:
            if depth < len(pool) and len(chosen) < limit:
                chosen.append(pool[depth])
        depth += 1
    return sorted(chosen)


def _paraphrase_pairs(
    kb: KnowledgeBase, held_out: set[str], *, with_answers: bool, rng: random.Random
) -> list[tuple[str, str]]:
    """(anchor, positive) pairs for contrastive fine-tuning, never using held-out questions."""
    pairs: list[tuple[str, str]] = []
    for entry in kb:
        questions = [q for q in entry.questions if q not in held_out]
        within = [(a, b) for i, a in enumerate(questions) for b in questions[i + 1 :]]
        rng.shuffle(within)
        pairs.extend(within[: 4 * len(questions)])
        if with_answers:
            pairs.extend((q, entry.answer) for q in questions)
    rng.shuffle(pairs)
    return pairs


def _top_two(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best column, best score and margin to the second per row (margin = score with one column)."""
    best = np.argmax(scores, axis=1)
    rows = np.arange(scores.shape[0])
    s1 = scores[rows, best]
    if scores.shape[1] < 2:
        return best, s1, np.maximum(s1, 0.0)
    masked = scores.copy()
    masked[rows, best] = -np.inf
    s2 = masked.max(axis=1)
    margin = np.where(np.isfinite(s2), s1 - s2, np.maximum(s1, 0.0))
    return best, s1, margin


def _held_out_features(
    vectors: np.ndarray, layout: _Layout, rows: Sequence[int], chunk: int = 512
) -> dict[str, list]:
    """Leave-one-out scores of held-out rows: in-scope (self masked) and OOS (own FAQ masked)."""
    out: dict[str, list] = {"top": [], "margin": [], "correct": [], "in_scope": []}
    n_faq = len(layout.group_starts)
    for start in range(0, len(rows), chunk):
        batch = np.asarray(rows[start : start + chunk])
        sims = vectors[batch] @ vectors.T
        sims[np.arange(len(batch)), batch] = -np.inf
        scores = per_id_max(sims, layout.group_starts)
        own = layout.owner[batch]
        best, s1, margin = _top_two(scores)
        out["top"] += s1.tolist()
        out["margin"] += margin.tolist()
        out["correct"] += (best == own).tolist()
        out["in_scope"] += [True] * len(batch)
        if n_faq >= 2:
            scores[np.arange(len(batch)), own] = -np.inf
            _, s1, margin = _top_two(scores)
            out["top"] += s1.tolist()
            out["margin"] += margin.tolist()
            out["correct"] += [False] * len(batch)
            out["in_scope"] += [False] * len(batch)
    return out


def _probe_features(
    embedder: TextEncoder,
    vectors: np.ndarray,
    layout: _Layout,
    probes: Sequence[str],
    *,
    max_similarity: float | None,
) -> tuple[list[float], list[float], int]:
    """Scores of out-of-scope probes; with `max_similarity`, probes closer than it are dropped."""
    if not probes or len(layout.group_starts) == 0:
        return [], [], 0
    probe_vectors = embedder.encode(list(probes))
    scores = per_id_max(probe_vectors @ vectors.T, layout.group_starts)
    _, s1, margin = _top_two(scores)
    keep = np.ones(len(probes), dtype=bool)
    if max_similarity is not None:
        keep = s1 < max_similarity
    return s1[keep].tolist(), margin[keep].tolist(), int((~keep).sum())


def fresh_copy(embedder: Embedder) -> Embedder:
    """A separately loaded Embedder with the same weights and settings (safe to fine-tune)."""
    from threefold.core.embedder import Embedder

    return Embedder(
        embedder.model, device=embedder.requested_device, max_length=embedder.max_length
    ).load()


def embedder_reference(embedder: Embedder, *, fine_tuned: bool) -> dict[str, Any]:
    """How bot.json names the embedder: saved beside the bot, or a base model to load."""
    ref = {
        "model_id": embedder.model_id,
        "weights_id": embedder.weights_id,
        "max_length": embedder.max_length,
    }
    if fine_tuned:
        return {**ref, "source": "saved", "path": "embedder"}
    return {**ref, "source": "base", "model": embedder.model}


def build_bot(
    kb: KnowledgeBase,
    embedder: Embedder,
    options: BuildOptions | None = None,
    *,
    show_progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> Bot:
    """Embed the KB, index it in FAISS and fit the confidence calibration on held-out data.

    With fine-tuning (`options.fine_tune`; by default for intent bots of large KBs) a copy of
    `embedder` is fine-tuned on paraphrase pairs (held-out questions excluded), and the bot keeps
    that copy; `embedder` itself is never changed. The bot records the resolved choice.

    `should_stop` is asked between the stages (fine-tune, embedding, calibration) and before
    each step of the intent head's training; `intent_model.TrainingStopped` when it says so.
    The encoder's own calls (a fine-tune, an `encode`) run to their end first: `core` takes no
    stop request.
    """
    from threefold.core.index import build_index

    options = options or BuildOptions()
    if len(kb) == 0:
        raise DataError("the knowledge base is empty; add at least one FAQ entry")
    started = time.perf_counter()
    rng = random.Random(options.seed)
    layout = _layout(kb, options.embed_answers)
    use_intent = options.intent_model and _has_paraphrases(layout, options.min_positives)
    if options.fine_tune is None:
        large = kb.n_questions >= options.fine_tune_min_questions
        options = replace(options, fine_tune=use_intent and large)
    holdout = _choose_holdout(
        layout,
        options.holdout_max,
        rng,
        per_faq=1 if options.fine_tune else None,
        share=options.intent_holdout_share if use_intent else None,
    )
    model = embedder
    fine_tune_stats: dict[str, Any] | None = None
    if options.fine_tune:
        held_texts = {layout.texts[r] for r in holdout}
        pairs = _paraphrase_pairs(kb, held_texts, with_answers=options.embed_answers, rng=rng)
        if not pairs:
            raise ConfigError(
                "fine-tuning needs FAQs with at least two questions (or answers embedded); this "
                "KB has none. Build without --fine-tune"
            )
        model = fresh_copy(embedder)
        logger.info("fine-tuning the embedder on %d paraphrase pairs", len(pairs))
        fine_tune_stats = model.fine_tune(
            pairs,
            epochs=options.fine_tune_epochs,
            batch_size=options.fine_tune_batch_size,
            learning_rate=options.fine_tune_learning_rate,
            max_steps=options.fine_tune_max_steps,
            show_progress=show_progress,
        )
    check_stop(should_stop, "before embedding the KB")
    logger.info("embedding %d texts of %d FAQs", len(layout.texts), len(kb))
    vectors = np.asarray(model.encode(layout.texts, show_progress=show_progress), dtype=np.float32)
    check_stop(should_stop, "after embedding the KB")
    held = _held_out_features(vectors, layout, holdout)
    probes: list[str] = list(GENERIC_OOS_PROBES) if options.generic_oos else []
    generic_top, generic_margin, dropped = _probe_features(
        model, vectors, layout, probes, max_similarity=options.generic_probe_max_similarity
    )
    given_top, given_margin, _ = _probe_features(
        model, vectors, layout, options.oos_probes, max_similarity=None
    )
    probe_top = generic_top + given_top
    calibrator = fit_calibrator(
        held["top"] + probe_top,
        held["margin"] + generic_margin + given_margin,
        held["correct"] + [False] * len(probe_top),
        held["in_scope"] + [False] * len(probe_top),
        method=options.calibration,
        oos_weight=options.oos_weight,
        min_positives=options.min_positives,
    )
    if options.threshold is not None:
        calibrator = calibrator.with_threshold(options.threshold)
    intent: IntentHead | None = None
    fusion: IntentFusion | None = None
    if use_intent:
        check_stop(should_stop, "before training the intent head")
        intent, fusion = _fit_intent(
            model, vectors, layout, holdout, kb, options, probes, should_stop=should_stop
        )
    index = build_index(layout.vector_ids, vectors)
    stats = {
        "faqs": len(kb),
        "questions": kb.n_questions,
        "vectors": len(layout.vector_ids),
        "held_out": len(holdout),
        "oos_probes": len(probe_top),
        "generic_probes_dropped_as_in_scope": dropped,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    if fine_tune_stats is not None:
        stats["fine_tune"] = fine_tune_stats
    if intent is not None and fusion is not None:
        stats["intent"] = {**intent.stats, "fusion": fusion.stats, "alpha": fusion.alpha}
    info = BotInfo(
        created_at=time.time(),
        embedder=embedder_reference(model, fine_tuned=options.fine_tune),
        embed_answers=options.embed_answers,
        ambiguity_margin=options.ambiguity_margin,
        options=options.to_dict(),
        stats=stats,
    )
    logger.info(
        "built bot: %d FAQs, %d vectors, intent model %s, threshold %.3f in %.1f s",
        len(kb),
        len(layout.vector_ids),
        "yes" if intent else "no",
        fusion.threshold if fusion else calibrator.threshold,
        stats["build_seconds"],
    )
    return Bot(
        kb=kb,
        index=index,
        embedder=model,
        calibrator=calibrator,
        info=info,
        intent=intent,
        fusion=fusion,
    )


def _has_paraphrases(layout: _Layout, min_positives: int) -> bool:
    """Enough FAQs with two or more questions to hold some out and still train on the rest."""
    return sum(len(rows) >= 2 for rows in layout.question_rows) >= max(min_positives, 2)


def _kb_order_logits(head: IntentHead, vectors: np.ndarray, kb: KnowledgeBase) -> np.ndarray:
    """The head's logits with columns in KB order (FAQs unknown to the head at -inf)."""
    logits = head.logits(vectors)
    column = {label: i for i, label in enumerate(head.labels)}
    out = np.full((len(vectors), len(kb)), -np.inf, dtype=np.float64)
    for position, entry in enumerate(kb):
        if entry.id in column:
            out[:, position] = logits[:, column[entry.id]]
    return out


def _fit_intent(
    embedder: TextEncoder,
    vectors: np.ndarray,
    layout: _Layout,
    holdout: list[int],
    kb: KnowledgeBase,
    options: BuildOptions,
    generic_probes: list[str],
    *,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[IntentHead, IntentFusion]:
    """Train the head without the held-out rows, fit the fusion on them, retrain on all rows."""
    training = IntentTraining(steps=options.intent_steps, seed=options.seed)
    ids = [entry.id for entry in kb]
    row_labels = [ids[position] for position in layout.owner]
    held = np.asarray(holdout, dtype=int)
    train_rows = np.setdiff1d(np.arange(len(layout.texts)), held)
    head = train_intent_head(
        vectors[train_rows],
        [row_labels[r] for r in train_rows],
        training,
        should_stop=should_stop,
    )
    sims = vectors[held] @ vectors.T
    sims[np.arange(len(held)), held] = -np.inf
    cosines = per_id_max(sims, layout.group_starts)
    probe_texts = [*generic_probes, *options.oos_probes]
    probe_vectors = (
        np.asarray(embedder.encode(probe_texts), dtype=np.float32)
        if probe_texts
        else np.zeros((0, vectors.shape[1]), np.float32)
    )
    probe_cosines = per_id_max(probe_vectors @ vectors.T, layout.group_starts)
    generic = np.arange(len(probe_texts)) < len(generic_probes)
    # a generic probe that closely matches a KB question is in scope for this KB
    closest = probe_cosines.max(axis=1, initial=-1.0)
    keep = ~generic | (closest < options.generic_probe_max_similarity)
    fusion = fit_fusion(
        HeldOut(
            logits=_kb_order_logits(head, vectors[held], kb),
            cosines=cosines,
            own=layout.owner[held],
            probe_logits=_kb_order_logits(head, probe_vectors[keep], kb),
            probe_cosines=probe_cosines[keep],
        ),
        np.ones(len(kb), dtype=bool),
        oos_prior=options.oos_prior,
        max_declined=options.max_declined,
    )
    if options.threshold is not None:
        fusion = fusion.with_threshold(options.threshold)
    final = train_intent_head(vectors, row_labels, training, should_stop=should_stop)
    return final, fusion


@dataclass(frozen=True)
class EditStats:
    """What an incremental edit did: texts embedded anew, vectors reused, FAQs touched."""

    embedded: int
    reused: int
    upserted: int
    deleted: int


def apply_edits(
    bot: Bot, upserts: Iterable[FaqEntry] = (), deletes: Iterable[str] = ()
) -> tuple[Bot, EditStats]:
    """A new Bot with entries added/replaced/removed; only new or changed texts are embedded.

    The current bot is left untouched (readers keep using it until the caller swaps), and the
    calibration is kept (rebuild to recalibrate after large changes).
    """
    from threefold.core.index import build_index

    upserts = list(upserts)
    deletes = list(dict.fromkeys(deletes))
    unknown = [faq_id for faq_id in deletes if faq_id not in bot.kb]
    if unknown:
        raise KeyError(f"unknown FAQ id(s) {unknown}")
    with_answer = bot.info.embed_answers
    old_ids = bot.index.ids
    index = build_index(old_ids, np.vstack([bot.index.get_vector(v) for v in old_ids]))
    stale: list[str] = []
    for faq_id in deletes:
        stale += [
            vector_id(faq_id, key) for key, _ in bot.kb[faq_id].texts(with_answer=with_answer)
        ]
    new_ids: list[str] = []
    new_vectors: list[np.ndarray] = []
    to_embed: list[tuple[str, str]] = []
    reused = 0
    for entry in upserts:
        previous = bot.kb.get(entry.id)
        known: dict[str, np.ndarray] = {}
        if previous is not None:
            for key, text in previous.texts(with_answer=with_answer):
                vid = vector_id(previous.id, key)
                known.setdefault(text, bot.index.get_vector(vid))
                stale.append(vid)
        for key, text in entry.texts(with_answer=with_answer):
            vid = vector_id(entry.id, key)
            if text in known:
                new_ids.append(vid)
                new_vectors.append(known[text])
                reused += 1
            else:
                to_embed.append((vid, text))
    index.remove(stale)
    if to_embed:
        embedded = bot.embedder.encode([text for _, text in to_embed])
        new_ids += [vid for vid, _ in to_embed]
        new_vectors += list(embedded)
    if new_ids:
        index.add(new_ids, np.vstack(new_vectors).astype(np.float32))
    kb = bot.kb.with_changes(upserts, deletes)
    info = replace(
        bot.info,
        version="",
        parent=bot.version or None,
        created_at=time.time(),
        stats={
            **bot.info.stats,
            "faqs": len(kb),
            "questions": kb.n_questions,
            "vectors": len(index),
        },
    )
    stats = EditStats(
        embedded=len(to_embed), reused=reused, upserted=len(upserts), deleted=len(deletes)
    )
    logger.info(
        "edited bot: %d upserted, %d deleted, %d texts embedded, %d reused",
        stats.upserted,
        stats.deleted,
        stats.embedded,
        stats.reused,
    )
    return Bot(
        kb=kb,
        index=index,
        embedder=bot.embedder,
        calibrator=bot.calibrator,
        info=info,
        intent=bot.intent,
        fusion=bot.fusion,
    ), stats
