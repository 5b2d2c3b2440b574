"""Which Redis errors mean Redis cannot serve now, as opposed to a bug in the request.

Unreachable (no connection, a timeout, still loading its data) or refusing for its state (out
of memory with `noeviction`, a read-only replica after a failover, MISCONF after a failed
snapshot, a cluster that is down): waiting fixes those, so an API answers 503 + Retry-After.
Anything else (a wrong type, a Lua runtime error, a bad argument) is a bug: a 500 with a
traceback in the log, never hidden as "retry shortly".
"""

from __future__ import annotations

from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Error replies Redis gives for its state, not for the command (also inside a script's error).
REFUSAL_CODES = frozenset(
    {"OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "MISCONF"}
)
_UNAVAILABLE = (
    RedisConnectionError,  # BusyLoadingError and MaxConnectionsError included
    RedisTimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    MasterDownError,
    TryAgainError,
    ClusterDownError,
)


def redis_unavailable(error: BaseException) -> bool:
    """Whether `error` says Redis cannot serve now (unreachable or refusing for its state)."""
    if isinstance(error, _UNAVAILABLE):
        return True
    if isinstance(error, ResponseError):
        return refusal_code(error) in REFUSAL_CODES
    return False


def refusal_code(error: ResponseError) -> str:
    """The error reply's code ("OOM", "WRONGTYPE", ...), also when a script's error wraps it."""
    return redis_reply(error).split(" ", 1)[0].upper()


def redis_reply(error: ResponseError) -> str:
    """Redis's own error reply: the first line, without the script text a script's error puts
    before it ("Error running script ...: @user_script:12: -OOM ...")."""
    text = str(error).splitlines()[0] if str(error) else ""
    return text.rsplit(": -", 1)[-1]
