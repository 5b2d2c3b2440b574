"""`threefold qa {build,eval,ask,export}` and `threefold serve qa`. Heavy imports stay inside."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from threefold.core.base_model import BASE_MODEL_ENV
from threefold.core.command_line import clean_errors, emit_json
from threefold.core.errors import ConfigError

REGISTRY_NAME = "qa-bot"  # the bot's entry in a registry ROOT (`--registry`)

if TYPE_CHECKING:
    from threefold.apps.qa.bot import Bot
    from threefold.apps.qa.config import QAConfig
    from threefold.apps.qa.evaluation import LabeledQuery
    from threefold.core.encoder import TextEncoder


def _read_probes(path: str) -> tuple[str, ...]:
    from threefold.core.errors import DataError
    from threefold.core.tables import read_records

    records = read_records(path)
    columns = set().union(*(r.values.keys() for r in records))
    column = next((c for c in ("text", "query", "question") if c in columns), None)
    if column is None:
        raise DataError(
            "expected a 'text' or 'query' column of out-of-scope questions, "
            f"found {sorted(columns)}",
            path=path,
        )
    return tuple(str(r.values[column]) for r in records if str(r.values.get(column) or "").strip())


@click.group()
def qa() -> None:
    """Customer-service FAQ bot: build, evaluate, ask."""


@qa.command()
@click.option(
    "--kb",
    "kb_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="FAQ file: CSV id,question,answer[,category] (rows sharing an id are "
    "paraphrases) or JSON/JSONL.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Bot directory; a new version is added when it already holds a bot.",
)
@click.option(
    "--model",
    default=None,
    envvar=BASE_MODEL_ENV,
    help="Base embedder (folder or hub id); default MiniLM.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=None,
    help="Answer threshold on the calibrated confidence (default: chosen at build).",
)
@click.option(
    "--ambiguity-margin",
    type=click.FloatRange(0, 0.99),
    default=0.03,
    show_default=True,
    help="Cosine gap between the top two FAQs below which the bot asks to clarify.",
)
@click.option(
    "--calibration",
    type=click.Choice(["logistic", "isotonic"]),
    default="logistic",
    show_default=True,
)
@click.option(
    "--oos",
    "oos_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="File of out-of-scope questions (column text or query) used as calibration negatives.",
)
@click.option("--no-answers", is_flag=True, help="Index questions only (not the answers).")
@click.option("--no-generic-oos", is_flag=True, help="Skip the built-in off-topic probes.")
@click.option(
    "--holdout-max",
    type=click.IntRange(0),
    default=2000,
    show_default=True,
    help="Most paraphrases held out for calibration.",
)
@click.option(
    "--fine-tune/--no-fine-tune",
    default=None,
    help="Fine-tune the embedder on paraphrase pairs (default: with the intent model, for KBs "
    "of 1,000+ questions).",
)
@click.option("--fine-tune-epochs", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--fine-tune-steps",
    type=click.IntRange(1),
    default=300,
    show_default=True,
    help="Stop fine-tuning after this many steps (or after --fine-tune-epochs).",
)
@click.option(
    "--oos-weight",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Weight of out-of-scope held-out cases against in-scope ones when choosing the "
    "threshold; below 1 answers more often (when few questions are out of scope).",
)
@click.option(
    "--no-intent-model",
    is_flag=True,
    help="Retrieval only: no intent head even when the KB has paraphrases (the baseline).",
)
@click.option(
    "--oos-prior",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Assumed share of out-of-scope messages; sets the intent bot's operating point.",
)
@click.option(
    "--max-declined",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.01,
    show_default=True,
    help="Most share of the held-out questions the intent bot ranks right that its threshold "
    "may decline (1 turns this cap off).",
)
@click.option(
    "--intent-steps",
    type=click.IntRange(1),
    default=300,
    show_default=True,
    help="Training steps of the intent head.",
)
@click.option("--seed", type=int, default=13, show_default=True)
@clean_errors
def build(
    kb_path: str,
    out_dir: str,
    model: str | None,
    threshold: float | None,
    ambiguity_margin: float,
    calibration: str,
    oos_path: str | None,
    no_answers: bool,
    no_generic_oos: bool,
    holdout_max: int,
    fine_tune: bool | None,
    fine_tune_epochs: int,
    fine_tune_steps: int,
    oos_weight: float,
    no_intent_model: bool,
    oos_prior: float,
    max_declined: float,
    intent_steps: int,
    seed: int,
) -> None:
    """Build a bot from a knowledge base; prints a JSON summary."""
    from threefold.apps.qa.builder import BuildOptions, build_bot
    from threefold.apps.qa.knowledge_base import KnowledgeBase
    from threefold.apps.qa.store import BotStore
    from threefold.core.embedder import Embedder
    from threefold.core.registry import check_entry_holds

    check_entry_holds(out_dir, ["bot.json"], "a FAQ bot")
    options = BuildOptions(
        embed_answers=not no_answers,
        calibration=calibration,
        threshold=threshold,
        ambiguity_margin=ambiguity_margin,
        holdout_max=holdout_max,
        generic_oos=not no_generic_oos,
        oos_probes=_read_probes(oos_path) if oos_path else (),
        fine_tune=fine_tune,
        fine_tune_epochs=fine_tune_epochs,
        fine_tune_max_steps=fine_tune_steps,
        oos_weight=oos_weight,
        intent_model=not no_intent_model,
        oos_prior=oos_prior,
        max_declined=max_declined,
        intent_steps=intent_steps,
        seed=seed,
    )
    kb = KnowledgeBase.load(kb_path)
    bot = build_bot(kb, Embedder(model).load(), options, show_progress=sys.stderr.isatty())
    store = BotStore(out_dir)
    with store.edit_lock():  # as the API's edits do: none lands between their read and publish
        version = store.publish(bot)
    emit_json(
        {
            "bot_dir": out_dir,
            "version": version,
            **bot.info.stats,
            "calibration": {
                "source": bot.calibrator.source,
                "method": bot.calibrator.method,
                "threshold": round(bot.calibrator.threshold, 4),
                **bot.calibrator.stats,
            },
            "threshold": round(bot.threshold, 4),
            "intent_model": bot.intent is not None,
        }
    )


@qa.command(name="eval")
@click.option(
    "--bot",
    "bot_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Bot directory (its current version) or one version folder of it "
    "(DIR/versions/VERSION, e.g. a candidate the gate rejected).",
)
@click.option(
    "--queries",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="query,expected_id file (or a gate set's question,faq_id); an empty id = out of scope.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=None,
    help="Override the bot's answer threshold.",
)
@click.option("--ambiguity-margin", type=click.FloatRange(0, 0.99), default=None)
@click.option(
    "--details",
    "details_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write one JSON line per query (outcome, top ids, confidence, correct) to this file.",
)
@clean_errors
def evaluate_command(
    bot_dir: str,
    queries: str,
    threshold: float | None,
    ambiguity_margin: float | None,
    details_path: str | None,
) -> None:
    """Evaluate a bot; prints one JSON object (accuracy, recall@5, MRR, OOS, outcomes, latency)."""
    import json

    from threefold.apps.qa.evaluation import evaluate

    labeled = _read_eval_queries(queries)
    bot = _load_bot(bot_dir)
    settings = bot.policy_settings(threshold=threshold, ambiguity_margin=ambiguity_margin)
    with ExitStack() as stack:
        handle = stack.enter_context(_details_file(details_path)) if details_path else None
        details: list[dict] | None = [] if handle else None
        result = evaluate(bot, labeled, settings=settings, details=details)
        if handle is not None and details is not None:
            handle.writelines(json.dumps(record) + "\n" for record in details)
    emit_json(result)


def _read_eval_queries(path: str) -> list[LabeledQuery]:
    """`query,expected_id` rows, or a gate set's `question,faq_id` (`retrain qa --gate-set`)."""
    from threefold.apps.qa.evaluation import read_queries
    from threefold.apps.qa.retrain import read_gate_set
    from threefold.core.tables import read_records

    columns = set().union(*(record.values.keys() for record in read_records(path)))
    if "query" not in columns and {"question", "faq_id"} <= columns:
        return read_gate_set(path)
    return read_queries(path)


def _load_bot(path: str) -> Bot:
    """The current version of bot directory `path`, or the version `path` is the folder of."""
    from threefold.apps.qa.store import BotStore
    from threefold.core.registry import VERSIONS_DIR, ModelEntry

    folder = Path(path).resolve()
    if ModelEntry.is_entry(folder) or not (folder / "bot.json").is_file():
        return BotStore(folder).load()
    if folder.parent.name != VERSIONS_DIR:
        raise ConfigError(
            f"--bot {path} holds a bot version (bot.json) but is not in a bot directory's "
            f"{VERSIONS_DIR}/ folder, where versions are read from. Fix: pass the version "
            f"folder inside its bot directory (DIR/{VERSIONS_DIR}/VERSION) or the directory"
        )
    return BotStore(folder.parent.parent).load(folder.name)


def _details_file(path: str) -> IO[str]:
    """`--details` opened for writing before the evaluation, so a path that cannot be written
    is refused at once instead of after the whole run."""
    try:
        return open(path, "w", encoding="utf-8")  # closed by the caller's ExitStack
    except OSError as exc:
        raise ConfigError(
            f"--details {path!r} cannot be written ({exc.strerror or exc}). Fix: pass a file "
            "in an existing folder you can write to."
        ) from exc


@qa.command()
@click.option("--bot", "bot_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--k", type=click.IntRange(1, 50), default=5, show_default=True)
@click.argument("question", nargs=-1, required=True)
@clean_errors
def ask(bot_dir: str, k: int, question: tuple[str, ...]) -> None:
    """Ask the bot one question (no session); prints the decision and the ranked candidates."""
    from threefold.apps.qa.policy import decide
    from threefold.apps.qa.store import BotStore

    text = " ".join(question)
    bot = BotStore(bot_dir).load()
    result = bot.retrieve(text, k=k)
    decision = decide(
        confidence=result.confidence,
        margin=result.ranking.margin,
        confidence_if_clear=result.confidence_if_clear,
        settings=bot.policy_settings(),
    )
    top = result.ranking.top
    answered = decision.outcome == "answer" and top is not None
    emit_json(
        {
            "question": text,
            "outcome": decision.outcome,
            "reason": decision.reason,
            "confidence": round(result.confidence, 4),
            "faq_id": top.faq_id if answered else None,
            "answer": bot.kb[top.faq_id].answer if answered else None,
            "candidates": [
                {
                    "faq_id": c.faq_id,
                    "score": round(c.score, 4),
                    "question": bot.kb[c.faq_id].question,
                }
                for c in result.ranking.candidates[:k]
            ],
        }
    )


@qa.command()
@click.option(
    "--what",
    type=click.Choice(["feedback", "unanswered", "agent_replies"]),
    default="feedback",
    show_default=True,
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default="-",
    help="CSV file to write ('-' = stdout).",
)
@click.option(
    "--redis-url",
    envvar="REDIS_URL",
    required=True,
    help="Redis holding the feedback (default $REDIS_URL).",
)
@click.option(
    "--prefix", envvar="THREEFOLD_QA_REDIS_PREFIX", default="threefold:qa:", show_default=True
)
@clean_errors
def export(what: str, out_path: str, redis_url: str, prefix: str) -> None:
    """Export thumbs-up/down feedback, the unanswered-question log or agents' replies to CSV."""
    from threefold.apps.qa.feedback import FeedbackStore
    from threefold.apps.qa.redis_feedback import RedisRecordLog
    from threefold.core.settings import load_settings
    from threefold.streaming.connections import RedisSettings, redis_client

    client = redis_client(load_settings(RedisSettings, "REDIS_", url=redis_url))
    store = FeedbackStore(RedisRecordLog(client, prefix=prefix))
    with click.open_file(out_path, "w", encoding="utf-8", lazy=False) as handle:
        write = {
            "feedback": store.export_feedback_csv,
            "unanswered": store.export_unanswered_csv,
            "agent_replies": store.export_agent_replies_csv,
        }[what]
        rows = write(handle)
    click.echo(f"wrote {rows} {what} rows to {out_path}", err=True)


def ensure_bot(settings: QAConfig, encoder: TextEncoder | None = None) -> TextEncoder | None:
    """Build a bot from `settings.kb_path` when `settings.bot_dir` holds none yet.

    Returns the encoder to share with the app (the one that built the bot, else `encoder`).
    """
    from threefold.apps.qa.store import BotStore

    store = BotStore(settings.bot_dir)
    if store.exists() or not settings.kb_path:
        return encoder
    from threefold.apps.qa.builder import build_bot
    from threefold.apps.qa.knowledge_base import KnowledgeBase
    from threefold.core.base_model import base_model_from_env
    from threefold.core.embedder import Embedder

    encoder = encoder or Embedder(base_model_from_env()).load()
    click.echo(
        f"bot directory {settings.bot_dir} is empty: building from {settings.kb_path}", err=True
    )
    store.publish(build_bot(KnowledgeBase.load(settings.kb_path), encoder))
    return encoder


@click.command(name="qa")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@click.option("--bot-dir", default=None, help="Overrides THREEFOLD_QA_BOT_DIR.")
@clean_errors
def serve_command(host: str, port: int, bot_dir: str | None) -> None:
    """Serve the FAQ bot API, chat widget and demo page (settings from THREEFOLD_QA_*).

    Builds the bot first when the bot directory is empty (from THREEFOLD_QA_KB_PATH) and starts
    an embedded redis-server when REDIS_URL is unset.
    """
    from threefold.apps.qa.config import QAConfig
    from threefold.apps.qa.resources import open_resources
    from threefold.apps.qa.web import create_app
    from threefold.core.settings import load_settings
    from threefold.core.web import configure_json_logging
    from threefold.streaming.connections import RedisSettings
    from threefold.streaming.services import services

    configure_json_logging()
    settings = QAConfig.from_env(bot_dir=bot_dir or None)
    redis = load_settings(RedisSettings, "REDIS_")
    encoder = ensure_bot(settings)
    with services(redis.url, None, need_kafka=False) as (redis_url, _):
        connection = redis if redis.url else RedisSettings(url=redis_url)
        resources = open_resources(settings, connection, encoder=encoder)
        app = create_app(settings, resources)
        click.echo(f"QA bot on http://{host}:{port}/demo", err=True)
        from threefold.core.server_errors import JsonErrorRequestHandler

        try:
            app.run(
                host=host,
                port=port,
                threaded=True,
                use_reloader=False,
                request_handler=JsonErrorRequestHandler,
            )
        finally:
            resources.close()  # records kept during an outage: one last try to write them


@click.command(name="qa")
@click.option("--bot-dir", default=None, help="The bot directory (default THREEFOLD_QA_BOT_DIR).")
@click.option(
    "--registry",
    default=None,
    envvar="THREEFOLD_MODELS_DIR",
    type=click.Path(file_okay=False),
    help="Registry ROOT: the bot is ROOT/qa-bot (instead of --bot-dir) [env THREEFOLD_MODELS_DIR].",
)
@click.option(
    "--gate-set",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="CSV question,faq_id (empty faq_id = out of scope) that no build sees "
    "(default THREEFOLD_QA_GATE_SET).",
)
@click.option(
    "--margin",
    type=click.FloatRange(-1, 1, min_open=True, max_open=True),
    default=None,
    help="Promote when candidate accuracy >= current - margin (default THREEFOLD_QA_GATE_MARGIN, "
    "0).",
)
@click.option(
    "--kb",
    "kb_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Build the candidate from this FAQ file instead of the live version's KB.",
)
@clean_errors
def retrain_command(
    bot_dir: str | None,
    registry: str | None,
    gate_set: str | None,
    margin: float | None,
    kb_path: str | None,
) -> None:
    """Rebuild the FAQ bot from its current KB, judge it on the gate set, publish gated.

    Prints one JSON object: candidate and current version, the gate's decision, the live version.
    Exit code 0 whether the candidate was promoted or rejected.
    """
    from threefold.apps.qa.config import QAConfig
    from threefold.apps.qa.knowledge_base import KnowledgeBase
    from threefold.apps.qa.retrain import retrain
    from threefold.apps.qa.store import BotStore

    if registry and bot_dir:
        source = click.get_current_context().get_parameter_source("registry")
        if source is not click.core.ParameterSource.ENVIRONMENT:
            raise ConfigError("pass either --registry or --bot-dir, not both")
        registry = None  # an explicit --bot-dir wins over THREEFOLD_MODELS_DIR
    if registry:
        bot_dir = str(Path(registry) / REGISTRY_NAME)
    overrides = {"bot_dir": bot_dir, "gate_set": gate_set, "gate_margin": margin}
    settings = QAConfig.from_env(**{k: v for k, v in overrides.items() if v is not None})
    if not settings.gate_set:
        raise ConfigError(
            "no gate set to judge the candidate on. Fix: pass --gate-set FILE or set "
            "THREEFOLD_QA_GATE_SET (CSV question,faq_id of questions no build has seen; an empty "
            "faq_id marks an out-of-scope question)"
        )
    store = BotStore(settings.bot_dir, keep_versions=settings.kb_versions_kept)
    kb = KnowledgeBase.load(kb_path) if kb_path else None
    emit_json(retrain(store, settings.gate_set, margin=settings.gate_margin, kb=kb))
