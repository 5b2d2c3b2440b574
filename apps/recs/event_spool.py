"""Events accepted while Redis was down, kept on local disk until Redis takes them.

The spool is `streaming.record_spool.RecordSpool` (fsync'd appends, flock between the workers
of a host, torn lines set aside in `<file>.rejected`): `EventSpool` only names the recs files.
The spool itself has no size limit; its `.rejected` file keeps at most REJECTED_MAX_BYTES (past
it, records Redis refused on their data are dropped, logged and counted). A worker's spools are
named by the Redis they belong to (`streaming.record_spool.spool_file_name`:
`events-<prefix>-<digests>.jsonl`, impressions likewise with `record_type=Impression`: any type
with `to_dict`/`from_dict`), so two deployments sharing a spool directory never replay each
other's records into the wrong Redis. The file an earlier version wrote (`events.jsonl`,
`impressions.jsonl`: no Redis in the name) is replayed first, once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from threefold.apps.recs.events import Event
from threefold.core.settings import safe_url
from threefold.streaming.record_spool import RecordSpool, spool_file_name

logger = logging.getLogger(__name__)
SPOOL_FILE = "events.jsonl"  # the name of a plain spool, and the one earlier versions used
REJECTED_MAX_BYTES = 16 * 2**20  # the `.rejected` file: refused records are rare, never a flood


class EventSpool(RecordSpool):
    """The recs spool of events (or other records) waiting for Redis.

    `legacy_file_name`: a spool an earlier version wrote in the same directory, replayed
    before this one (never appended to), until it is empty.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        file_name: str = SPOOL_FILE,
        record_type: Any = Event,
        legacy_file_name: str | None = None,
    ) -> None:
        super().__init__(
            directory,
            file_name=file_name,
            record_type=record_type,
            rejected_max_bytes=REJECTED_MAX_BYTES,
        )
        self.legacy = (
            RecordSpool(
                directory,
                file_name=legacy_file_name,
                record_type=record_type,
                rejected_max_bytes=REJECTED_MAX_BYTES,
            )
            if legacy_file_name not in (None, file_name)
            else None
        )
        if self.legacy is not None:  # one list: a listener hears both files' dropped set-asides
            self.legacy.on_not_set_aside = self.on_not_set_aside

    @classmethod
    def for_redis(
        cls,
        directory: str | os.PathLike[str],
        *,
        kind: str,
        redis_prefix: str,
        redis_url: str | None,
        legacy_file_name: str,
        record_type: Any = Event,
    ) -> EventSpool:
        """The spool of `kind` records bound for this Redis and prefix (`spool_file_name`),
        replaying `legacy_file_name` first; a waiting legacy spool is logged."""
        spool = cls(
            directory,
            file_name=spool_file_name(kind, redis_prefix, redis_url),
            record_type=record_type,
            legacy_file_name=legacy_file_name,
        )
        if spool.legacy is not None and spool.legacy.pending():
            logger.warning(
                "spool %s of an earlier version (named without its Redis) holds %d records: "
                "they are replayed once to %s, prefix %r, before %s; if another deployment "
                "shares %s, some may be its",
                spool.legacy.path,
                spool.legacy.count(),
                safe_url(redis_url),
                redis_prefix,
                spool.path.name,
                spool.path.parent,
                extra={"fields": {"event": "legacy_spool_found", "file": str(spool.legacy.path)}},
            )
        return spool

    def pending(self) -> bool:
        return super().pending() or (self.legacy is not None and self.legacy.pending())

    def size_bytes(self) -> int:
        return super().size_bytes() + (self.legacy.size_bytes() if self.legacy else 0)

    def count(self) -> int:
        return super().count() + (self.legacy.count() if self.legacy else 0)

    def replay(
        self,
        push: Callable[[list[Any]], bool],
        *,
        prepare: Callable[[list[Any]], list[Any]] | None = None,
        on_refused: Callable[[list[tuple[Any, str]]], object] | None = None,
    ) -> int:
        """`RecordSpool.replay`, the legacy spool's records first (this one's wait until it
        is empty, so the order is kept)."""
        taken = 0
        if self.legacy is not None and self.legacy.pending():
            taken = self.legacy.replay(push, prepare=prepare, on_refused=on_refused)
            if self.legacy.pending():
                return taken
        return taken + super().replay(push, prepare=prepare, on_refused=on_refused)
