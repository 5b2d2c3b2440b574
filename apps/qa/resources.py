"""What the QA views share (`Resources`) and how it is opened from settings.

Opening only loads: the current bot from its directory and a Redis client. Building a bot or
starting a redis-server is the job of `threefold serve qa` and the demo. Without a Redis URL
sessions and feedback live in this process (the app reports itself degraded). Records of a
Redis outage wait in the spool (`spool_dir`, on disk; one file per Redis prefix and server,
into which opening moves what a former version spooled). `Resources.start` (called by the app
factory) starts the background flush of those records, which at once replays what earlier
workers spooled; `Resources.close` stops it and the bot's background rebuild, and runs at the
process's exit if nobody called it (gunicorn).
"""

from __future__ import annotations

import atexit
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from threefold.apps.qa.agent_desk import AgentDesk
from threefold.apps.qa.agents import AgentDirectory
from threefold.apps.qa.bot_manager import BotManager
from threefold.apps.qa.chat import ChatService
from threefold.apps.qa.config import QAConfig
from threefold.apps.qa.fallback import (
    FallbackRecordLog,
    FallbackSessionStore,
    KeptRecord,
    RecordFlusher,
    RedisFallback,
    RememberingHandoffStore,
    adopt_former_spool,
    former_spool_file_name,
    spool_file_name,
)
from threefold.apps.qa.feedback import FeedbackStore, MemoryRecordLog
from threefold.apps.qa.handoff import HandoffNotifier
from threefold.apps.qa.handoff_events import EventBus, MemoryEventBus
from threefold.apps.qa.handoff_queue import HandoffStore, MemoryHandoffStore
from threefold.apps.qa.metrics import QAMetrics
from threefold.apps.qa.redis_feedback import RedisRecordLog
from threefold.apps.qa.redis_handoff import RedisEventBus, RedisHandoffStore
from threefold.apps.qa.redis_sessions import RedisSessionStore
from threefold.apps.qa.retrain import GateSet
from threefold.apps.qa.sessions import MemorySessionStore, SessionStore
from threefold.apps.qa.store import BotStore
from threefold.core.encoder import TextEncoder
from threefold.core.errors import ConfigError
from threefold.core.redis_breaker import breaker_for
from threefold.core.settings import reveal
from threefold.streaming.connections import RedisSettings, redis_client
from threefold.streaming.record_spool import RecordSpool

logger = logging.getLogger(__name__)
EXTENSION_KEY = "threefold.qa"


@dataclass
class Resources:
    """Everything the views share, kept in `app.extensions["threefold.qa"]`.

    `redis` is None when no Redis URL is configured (sessions, feedback and handoffs in memory
    then). `desk` is the human side of handoffs; `agents` who may sign in to the console.
    """

    config: QAConfig
    manager: BotManager
    chat: ChatService
    sessions: SessionStore
    feedback: FeedbackStore
    redis: Any | None
    registry: CollectorRegistry
    desk: AgentDesk
    agents: AgentDirectory
    breaker: RedisFallback | None = None
    metrics: QAMetrics | None = None
    flusher: RecordFlusher | None = None

    def start(self) -> None:
        """Start the background work: the flush of records kept during a Redis outage.

        Also registers `close` to run when the process exits (a gunicorn worker's SIGTERM or
        max-requests recycle ends with a normal interpreter exit), so that the records kept
        then get their last try and a background rebuild stops before it publishes.
        """
        if self.flusher is not None:
            self.flusher.start()
        atexit.unregister(self.close)  # once, however often started
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the background work: the bot's background rebuild (`BotManager.close`: it
        publishes nothing more) and the flush (after one last attempt to write kept records).

        Safe to call again; no longer runs at exit once called.
        """
        atexit.unregister(self.close)  # nothing at exit holds on to closed resources
        self.manager.close()
        if self.flusher is not None:
            self.flusher.stop()

    def degraded_reason(self) -> str | None:
        """Why answers are degraded right now ("redis unavailable"), or None."""
        return None if self.breaker is None else self.breaker.degraded_reason()

    def redis_status(self) -> str:
        """Redis as /healthz reports it: ok, not configured, or unreachable (also while the
        breaker is open, without asking Redis, which would hold the health check for the socket
        timeout; once the breaker's pause is over, the ping may be its probe)."""
        if self.redis is None:
            return "not configured"
        through_breaker = self.breaker.attempt("ping") if self.breaker else nullcontext()
        try:
            with through_breaker:
                return "ok" if self.redis.ping() else "unreachable"
        except Exception:  # any connection failure means degraded, reported not raised
            return "unreachable"


def open_bot(settings: QAConfig, *, encoder: TextEncoder | None = None) -> BotManager:
    """A manager serving the current bot of `settings.bot_dir`; ConfigError when there is none."""
    store = BotStore(settings.bot_dir, keep_versions=settings.kb_versions_kept)
    if not store.exists():
        raise ConfigError(
            f"no bot in {settings.bot_dir!r}. Fix: run `threefold qa build --kb KB.csv --out "
            f"{settings.bot_dir}`, or serve with THREEFOLD_QA_KB_PATH set so `threefold serve qa` "
            "builds one"
        )
    gate = (
        GateSet.read(settings.gate_set, margin=settings.gate_margin) if settings.gate_set else None
    )
    manager = BotManager(
        store,
        embedder=encoder,
        micro_batch=True,
        check_every_s=settings.follow_pointer_s,
        gate=gate,
    )
    manager.reload()
    return manager


def open_resources(
    settings: QAConfig, redis: RedisSettings, *, encoder: TextEncoder | None = None
) -> Resources:
    """Load the bot and connect to Redis (`redis.url` None: in-memory sessions and feedback).

    `encoder`: an already loaded encoder to share when the bot was built with the same weights.
    """
    manager = open_bot(settings, encoder=encoder)
    registry = CollectorRegistry()
    metrics = QAMetrics(registry)
    manager.on_swap.append(lambda _bot: metrics.bot_swaps.inc())
    manager.on_rebuild.append(lambda outcome: metrics.bot_rebuilds.labels(outcome).inc())
    client = None
    breaker = None
    flusher = None
    last_seen_with_person = None
    memory_sessions = MemorySessionStore(ttl_s=settings.session_ttl_s)
    memory_log = MemoryRecordLog(max_entries=settings.record_max_entries)
    if redis.url:
        client = redis_client(
            redis, socket_timeout=settings.redis_timeout_s, health_check_interval=30
        )
        # the client's breaker, so the rate limiter (`core.web`) opens and closes it too
        breaker = RedisFallback(breaker_for(client, retry_s=settings.redis_retry_s))
        shared_sessions: SessionStore = RedisSessionStore(
            client, prefix=settings.redis_prefix, ttl_s=settings.session_ttl_s
        )
        sessions: SessionStore = FallbackSessionStore(shared_sessions, memory_sessions, breaker)
        record_log = RedisRecordLog(
            client,
            prefix=settings.redis_prefix,
            max_entries=settings.record_max_entries,
            ttl_s=settings.record_ttl_days * 86_400,
        )
        spool = RecordSpool(
            settings.spool_dir,
            file_name=spool_file_name(settings.redis_prefix, redis.url),
            record_type=KeptRecord,
            max_bytes=settings.spool_max_mb * 2**20,
            rejected_max_bytes=settings.spool_rejected_max_mb * 2**20,
        )
        spool.on_not_set_aside.append(metrics.observe_records_rejected_lost)
        former_file = former_spool_file_name(settings.redis_prefix)
        adopt_former_spool(
            spool, RecordSpool(settings.spool_dir, file_name=former_file, record_type=KeptRecord)
        )
        fallback_log = FallbackRecordLog(record_log, memory_log, breaker, spool=spool)
        fallback_log.on_spool_refused.append(metrics.observe_spool_refused)
        fallback_log.on_dropped.append(metrics.observe_records_dropped)
        fallback_log.on_rejected.append(metrics.observe_record_rejected)
        fallback_log.on_already_written.append(metrics.observe_records_already_written)
        flusher = RecordFlusher(fallback_log, breaker=breaker)
        metrics.count_pending_records_with(fallback_log.in_memory, fallback_log.spooled)
        feedback = FeedbackStore(fallback_log)
        remembered = RememberingHandoffStore(
            RedisHandoffStore(
                client, prefix=settings.redis_prefix, counts_for_s=settings.session_ttl_s
            ),
            ttl_s=settings.session_ttl_s,
            breaker=breaker,
        )
        last_seen_with_person = remembered.with_person
        handoffs: HandoffStore = remembered
        bus: EventBus = RedisEventBus(client, prefix=settings.redis_prefix)
    else:
        logger.warning(
            "no REDIS_URL set: sessions, feedback and handoffs are kept in this process only "
            "(degraded)"
        )
        sessions = shared_sessions = memory_sessions
        feedback = FeedbackStore(memory_log)
        handoffs = MemoryHandoffStore(counts_for_s=settings.session_ttl_s)
        bus = MemoryEventBus()
    desk = AgentDesk(
        store=handoffs,
        bus=bus,
        sessions=shared_sessions,  # agents' replies never stay in one worker's memory
        wait_timeout_s=settings.agent_wait_timeout_s,
        metrics=metrics,
        on_reply=lambda session, turn: feedback.log_agent_reply(
            session_id=session.id,
            turn_id=turn.turn_id,
            agent=turn.agent or "",
            question=session.last_user_text() or "",
            reply=turn.text,
        ),
    )
    metrics.count_queue_with(desk.waiting_customers)
    notifier = HandoffNotifier(
        reveal(settings.handoff_webhook),
        timeout_s=settings.handoff_timeout_s,
        on_result=metrics.observe_webhook,
    )
    chat = ChatService(
        get_bot=lambda: manager.bot,
        sessions=sessions,
        feedback=feedback,
        notifier=notifier,
        threshold=settings.threshold,
        ambiguity_margin=settings.ambiguity_margin,
        handoff_after_failures=settings.handoff_after_failures,
        n_suggestions=settings.n_suggestions,
        observe=metrics.observe_reply,
        desk=desk,
        desk_breaker=None if breaker is None else breaker.breaker,
        last_seen_with_person=last_seen_with_person,
        shared_sessions=shared_sessions,
    )
    return Resources(
        config=settings,
        manager=manager,
        chat=chat,
        sessions=sessions,
        feedback=feedback,
        redis=client,
        registry=registry,
        desk=desk,
        agents=AgentDirectory.parse(reveal(settings.agent_tokens)),
        breaker=breaker,
        metrics=metrics,
        flusher=flusher,
    )
