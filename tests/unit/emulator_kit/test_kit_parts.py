"""The emulator kit's pure parts: fault specs, the token buckets (global and per route), the router, the counters."""

from __future__ import annotations

import pytest

from localdev.emulator_kit import (
    ConnectionCap,
    Fault,
    FaultInjector,
    FaultSpecError,
    Request,
    RequestCounter,
    RouteBuckets,
    Router,
    TokenBucket,
    json_response,
    parse_fault_spec,
    try_acquire_all,
)


def test_fault_spec_parses_statuses_timeout_and_reset() -> None:
    assert parse_fault_spec("429:0.1, 500:0.05,timeout:0.02,reset:0.01") == [
        (Fault("429"), 0.1),
        (Fault("500"), 0.05),
        (Fault("timeout"), 0.02),
        (Fault("reset"), 0.01),
    ]
    assert parse_fault_spec("") == [] and parse_fault_spec(None) == []
    assert Fault("503").status == 503 and Fault("reset").status is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("500", "no probability"),
        ("teapot:0.1", "unknown fault kind"),
        ("200:0.1", "unknown fault kind"),
        ("500:x", "not a number"),
        ("500:1.5", "between 0 and 1"),
        ("500:0.6,503:0.6", "more than 1"),
    ],
)
def test_bad_fault_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_fault_spec(spec)


def test_fault_draws_follow_the_seed_and_the_probabilities() -> None:
    first = FaultInjector("500:0.25,reset:0.25", seed=7)
    second = FaultInjector("500:0.25,reset:0.25", seed=7)
    draws = [first.draw() for _ in range(2000)]
    assert draws == [second.draw() for _ in range(2000)]
    share_500 = sum(d == Fault("500") for d in draws) / len(draws)
    share_none = sum(d is None for d in draws) / len(draws)
    assert 0.2 < share_500 < 0.3 and 0.45 < share_none < 0.55
    assert FaultInjector("", seed=1).draw() is None


def test_a_bad_spec_leaves_the_old_one() -> None:
    injector = FaultInjector("500:1", seed=1)
    with pytest.raises(FaultSpecError):
        injector.configure("oops:1")
    assert injector.draw() == Fault("500")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(40, clock=clock)
    assert [bucket.try_acquire() for _ in range(41)] == [True] * 40 + [False]
    assert bucket.seconds_until_token() == pytest.approx(1 / 40)
    assert bucket.retry_after_header() == "1"
    clock.now += 0.1  # four tokens
    assert [bucket.try_acquire() for _ in range(5)] == [True] * 4 + [False]
    clock.now += 100  # never more than the burst
    assert sum(bucket.try_acquire() for _ in range(100)) == 40


def test_token_bucket_off_and_custom_burst() -> None:
    assert all(TokenBucket(None).try_acquire() for _ in range(1000))
    clock = FakeClock()
    bucket = TokenBucket(10, burst=2, clock=clock)
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]


def test_route_buckets_limit_each_route_and_a_refused_request_spends_nothing() -> None:
    clock = FakeClock()
    account = TokenBucket(100, burst=5, clock=clock)
    routes = RouteBuckets(10, burst=3, clock=clock)
    things, others = routes.bucket("GET /v1/things/{id}"), routes.bucket("GET /v1/others")
    assert things is not None and others is not None and routes.bucket("GET /v1/things/{id}") is things
    # Three of the route's own, then refused by it: the account's bucket keeps the token (2 of 5 left, not 1).
    assert [try_acquire_all(account, things) for _ in range(4)] == [None, None, None, things]
    # Another route has its own three, but the account's two run out first; its own token stays unspent.
    assert [try_acquire_all(account, others) for _ in range(3)] == [None, None, account]
    clock.now += 0.01  # one token for the account (100/s), a tenth for each route (10/s)
    assert try_acquire_all(account, things) is things  # the route is still empty
    assert try_acquire_all(account, others) is None  # its third token, kept when the account refused it
    assert things.retry_after_header() == "1"
    routes.configure(None)
    assert routes.bucket("GET /v1/things/{id}") is None
    routes.configure(10, burst=2)  # a new rate: every route starts with a full bucket
    refilled = routes.bucket("GET /v1/things/{id}")
    assert refilled is not None and [refilled.try_acquire() for _ in range(3)] == [True, True, False]


def test_connection_cap_flags_connections_beyond_the_limit() -> None:
    cap = ConnectionCap(2)
    assert [cap.enter(), cap.enter(), cap.enter()] == [True, True, False]
    cap.leave()
    cap.leave()
    assert cap.enter() is True and cap.peak == 3
    assert ConnectionCap(None).enter() is True


def _request(method: str, path: str) -> Request:
    return Request(method, path, {}, {}, b"")


def test_router_matches_params_methods_and_order() -> None:
    router = Router()
    router.add("GET", "/v1/customers/search", lambda r: json_response(200, "search"))
    router.add("GET", "/v1/customers/{uuid}", lambda r: json_response(200, "one"))
    router.add("DELETE", "/v1/customers/{uuid}", lambda r: json_response(204, None))
    found = router.match("GET", "/v1/customers/search")
    assert found is not None and found.route is not None and found.route.pattern == "/v1/customers/search"
    found = router.match("GET", "/v1/customers/cus_1")
    assert found is not None and found.params == {"uuid": "cus_1"}
    assert found.route is not None and found.route.name == "GET /v1/customers/{uuid}"
    not_allowed = router.match("PATCH", "/v1/customers/cus_1")
    assert not_allowed is not None and not_allowed.route is None
    assert router.match("GET", "/v1/customers/cus_1/extra") is None
    assert router.match("GET", "/v1/customers.json") is None


def test_request_helpers() -> None:
    request = Request("POST", "/x", {"a": ["1", "2"]}, {"content-type": "application/json"}, b' {"k": 1} ')
    assert request.query_one("a") == "2" and request.query_one("b", "d") == "d"
    assert request.header("Content-Type") == "application/json"
    assert request.json() == {"k": 1}
    assert Request("GET", "/x", {}, {}, b"").json() is None
    assert Request("POST", "/x", {}, {}, b"a=1&metadata[k]=v&a=2").form() == {"a": ["1", "2"], "metadata[k]": ["v"]}


def test_counter_groups_by_route_and_status() -> None:
    counter = RequestCounter()
    for status in (200, 200, 429, "reset"):
        counter.record("GET /v1/ping", status)
    assert counter.snapshot() == {"GET /v1/ping": {"200": 2, "429": 1, "reset": 1}}
    assert counter.total() == 4 and counter.total(429) == 1 and counter.count("GET /v1/ping", 200) == 2
    counter.reset()
    assert counter.snapshot() == {}


def test_emulator_command_lines_listen_on_loopback_only() -> None:
    from click.testing import CliRunner

    from chartmogul_sync.cli import main

    for emulator, host in (("chartmogul", "0.0.0.0"), ("stripe", "192.168.1.10"), ("chartmogul", "example.com")):
        result = CliRunner().invoke(main, ["emulate", emulator, "--host", host])
        assert result.exit_code == 2 and "not a loopback address" in result.output
