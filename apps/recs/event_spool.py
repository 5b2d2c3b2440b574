"""Events accepted while Redis was down, kept on local disk until Redis takes them.

The spool is `streaming.record_spool.RecordSpool` (fsync'd appends, flock between the workers
of a host, torn lines set aside in `<file>.rejected`): `EventSpool` only names the recs files,
`events.jsonl` by default (impressions use `impressions.jsonl` with `record_type=Impression`:
any type with `to_dict`/`from_dict`), with no size limit.
"""

from __future__ import annotations

import os
from typing import Any

from threefold.apps.recs.events import Event
from threefold.streaming.record_spool import RecordSpool

SPOOL_FILE = "events.jsonl"


class EventSpool(RecordSpool):
    """The recs spool of events (or other records) waiting for Redis."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        file_name: str = SPOOL_FILE,
        record_type: Any = Event,
    ) -> None:
        super().__init__(directory, file_name=file_name, record_type=record_type)
