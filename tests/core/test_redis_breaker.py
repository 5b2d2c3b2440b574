"""The shared Redis circuit breaker: open after a connection failure, then a single probe."""

from __future__ import annotations

import threading

import pytest
import redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from threefold.core.redis_breaker import BreakerOpen, Failure, RedisBreaker, breaker_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Calls:
    """A primary that counts its calls and fails with `error` (None: answers "redis")."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        if self.error is not None:
            raise self.error
        return "redis"


def memory() -> str:
    return "memory"


def opened(clock: FakeClock, retry_s: float = 5.0) -> RedisBreaker:
    """A breaker that one timeout has just opened."""
    breaker = RedisBreaker(retry_s=retry_s, clock=clock)
    assert breaker.call("get", Calls(RedisTimeoutError("Timeout reading")), memory) == "memory"
    assert breaker.is_open
    return breaker


def test_a_timeout_opens_it_and_calls_skip_redis_until_the_retry_time() -> None:
    clock = FakeClock()
    breaker = opened(clock)
    primary = Calls()
    for _ in range(10):
        assert breaker.call("get", primary, memory) == "memory"
        clock.now += 0.25
    assert primary.count == 0 and breaker.skipped == 10
    clock.now += 2.5  # 5.0 s after the timeout
    assert breaker.call("get", primary, memory) == "redis"
    assert primary.count == 1 and not breaker.is_open and breaker.probes == 1


def test_after_the_retry_time_one_caller_probes_while_the_others_keep_the_fallback() -> None:
    clock = FakeClock()
    breaker = opened(clock)
    clock.now += 5.0
    probing, finish = threading.Event(), threading.Event()
    calls: list[str] = []

    def hung_redis() -> str:
        calls.append(threading.current_thread().name)
        probing.set()
        finish.wait(10)
        raise RedisTimeoutError("Timeout reading")

    probe_result: list[str] = []
    probe = threading.Thread(
        target=lambda: probe_result.append(breaker.call("get", hung_redis, memory)), name="probe"
    )
    probe.start()
    assert probing.wait(10)
    others: list[str] = []
    threads = [
        threading.Thread(target=lambda: others.append(breaker.call("get", hung_redis, memory)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert others == ["memory"] * 8  # none waited for the probe, none asked Redis
    finish.set()
    probe.join(10)
    assert calls == ["probe"] and probe_result == ["memory"]
    assert breaker.is_open and breaker.probes == 1
    primary = Calls()
    assert breaker.call("get", primary, memory) == "memory"  # the failed probe re-opened it
    clock.now += 4.5
    assert breaker.call("get", primary, memory) == "memory"
    clock.now += 0.5
    assert breaker.call("get", primary, memory) == "redis"
    assert primary.count == 1 and not breaker.is_open and breaker.probes == 2


def test_skipping_says_whether_a_call_now_would_skip_redis_without_taking_the_probe() -> None:
    clock = FakeClock()
    assert not RedisBreaker(retry_s=5.0, clock=clock).skipping
    breaker = opened(clock)
    assert breaker.skipping
    clock.now += 5.0
    assert not breaker.skipping and breaker.is_open  # half-open: the next call probes
    assert not breaker.skipping and breaker.probes == 0  # asking took no probe's place
    with breaker.attempt("get"):
        assert breaker.probes == 1 and breaker.skipping  # a probe in flight
    assert not breaker.skipping and not breaker.is_open


def test_bad_data_is_an_answer_it_neither_opens_it_nor_closes_it() -> None:
    clock = FakeClock()
    breaker = RedisBreaker(retry_s=5.0, clock=clock)
    with pytest.raises(ResponseError):
        breaker.call("get", Calls(ResponseError("WRONGTYPE")), memory)
    assert not breaker.is_open and breaker.failures == 0
    breaker = opened(clock)
    clock.now += 5.0
    with pytest.raises(ResponseError):  # the probe learnt nothing: the next call probes
        breaker.call("get", Calls(ResponseError("WRONGTYPE")), memory)
    assert breaker.is_open
    assert breaker.call("get", Calls(), memory) == "redis"
    assert not breaker.is_open


def test_an_attempt_raises_breaker_open_a_redis_connection_error_while_open() -> None:
    clock = FakeClock()
    breaker = opened(clock)
    skipped = pytest.raises(redis.ConnectionError, match=r"did not answer get .*TimeoutError")
    with skipped, breaker.attempt("read"):
        pytest.fail("Redis asked while the breaker is open")
    assert issubclass(BreakerOpen, redis.ConnectionError)


def test_an_attempt_that_always_runs_is_never_the_probe_but_its_failure_counts() -> None:
    clock = FakeClock()
    breaker = opened(clock)
    with breaker.attempt("read for a person", always=True):
        pass  # Redis answered, yet only a probe closes the breaker
    assert breaker.is_open and breaker.probes == 0
    clock.now += 4.0
    with pytest.raises(RedisTimeoutError), breaker.attempt("read for a person", always=True):
        raise RedisTimeoutError("Timeout reading")
    clock.now += 4.0  # 8 s after the first timeout, 4 s after the second
    assert breaker.call("get", Calls(), memory) == "memory"
    clock.now += 1.0
    assert breaker.call("get", Calls(), memory) == "redis"


def test_each_user_hears_of_an_outage_once() -> None:
    clock = FakeClock()
    breaker = opened(clock)
    cause = breaker.first_fallback("rate limits")
    assert cause == Failure("get", "TimeoutError", "Timeout reading")
    assert breaker.first_fallback("rate limits") is None
    assert breaker.first_fallback("qa") is not None
    clock.now += 5.0
    breaker.call("get", Calls(), memory)  # closed
    breaker.call("set", Calls(redis.ConnectionError("refused")), memory)  # a second outage
    assert breaker.first_fallback("rate limits") == Failure("set", "ConnectionError", "refused")


def test_every_user_of_a_client_shares_its_breaker() -> None:
    one, other = redis.Redis(), redis.Redis()
    assert breaker_for(one, retry_s=2.0) is breaker_for(one)
    assert breaker_for(one).retry_s == 2.0
    assert breaker_for(other) is not breaker_for(one)


def test_retry_s_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="retry_s must be >= 0, found -1"):
        RedisBreaker(retry_s=-1)
