"""Ids that make a record's write to Redis happen once, whatever retries it.

A record accepted while Redis may stall gets an id before its first write; the app's append
script claims a guard key for that id in the same call (`SET <guard> 1 NX EX <ttl>`) and skips
the record when the guard exists. So a write Redis carried out after the client had timed out
(a stall longer than the socket timeout: a fork for a snapshot, a VM pause), written again from
a spool or a worker's memory, is stored once; so is a spool replayed again by the next worker
after one died between Redis taking it and the file being emptied.

Such a script checks the type of every key it writes before it writes anything
(`WRONG_TYPE_LUA`): a call that fails half-way would leave guards claimed for records it never
stored.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

# How long a write id's guard is kept: a write Redis carried out while the app could not hear it
# must still be known when the app writes the record again (from its spool or memory, once Redis
# answers); a day covers any outage those outlive. Costs ~120 bytes of Redis memory per record.
WRITE_GUARD_SECONDS = 86_400

# Lua: `wrong_type(key, expected, what)`, an error reply when `key` holds another type than
# `expected` (nil when it holds that type or is absent); `what` names the batch's records.
WRONG_TYPE_LUA = """
local function wrong_type(key, expected, what)
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= expected then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. found .. ', expected a '
      .. expected .. '; no ' .. what .. ' of this batch was stored')
  end
end
"""


def new_write_id() -> str:
    """A fresh random id (96 bits, 16 URL-safe characters) for a record accepted now."""
    return secrets.token_urlsafe(12)


def spooled_write_id(place: int, data: Mapping[str, Any]) -> str:
    """The id of a record an earlier version spooled without one (`data`: its JSON form), from
    its place in the spool and its content: every replay of that spool gives it the same id, so
    a replay repeated after a crash does not write it twice."""
    content = f"{place}\n{json.dumps(data, sort_keys=True)}".encode()
    return "spool-" + hashlib.blake2b(content, digest_size=12).hexdigest()
