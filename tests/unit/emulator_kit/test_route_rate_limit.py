"""The kit's per-route rate limit over loopback HTTP: each route template its own bucket, besides the global one.

Rates of 0.1-0.2 requests/s (a token in 5-10 s) make the counts exact: only the burst is ever admitted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from localdev.emulator_kit import EmulatorServer, Router, ServerSettings, json_response

SLOW = 0.1  # requests/s: no token is added while a test runs


def _router() -> Router:
    router = Router()
    router.add("GET", "/v1/things/{id}", lambda request: json_response(200, {"id": request.params["id"]}))
    router.add("GET", "/v1/others", lambda request: json_response(200, {"data": []}))
    return router


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


def _statuses(session: requests.Session, server: EmulatorServer, paths: list[str]) -> list[int]:
    return [session.get(server.base_url + path, timeout=5).status_code for path in paths]


def test_each_route_template_has_its_own_bucket_whatever_the_ids(session: requests.Session) -> None:
    settings = ServerSettings(rate_limit=1000, route_rate_limit=SLOW, route_burst=3)
    with EmulatorServer(_router(), settings=settings) as server:
        things = _statuses(session, server, [f"/v1/things/{n}" for n in "abcde"])
        others = _statuses(session, server, ["/v1/others"] * 3)
        unknown = _statuses(session, server, ["/v1/nowhere"] * 5)  # no route, no route limit: the global one only
        report = server.request_report()["routes"]
    assert things == [200, 200, 200, 429, 429]
    assert others == [200, 200, 200]
    assert unknown == [404] * 5
    assert report["GET /v1/things/{id}"] == {"200": 3, "429": 2}
    assert report["GET /v1/others"] == {"200": 3}


def test_a_request_refused_by_one_limit_is_refused_once_and_spends_nothing_of_the_other(
    session: requests.Session,
) -> None:
    settings = ServerSettings(rate_limit=SLOW, burst=4, route_rate_limit=2 * SLOW, route_burst=2, retry_after=True)
    with EmulatorServer(_router(), settings=settings) as server:
        things = [session.get(server.base_url + f"/v1/things/{n}", timeout=5) for n in "xyz"]
        # The route's refusal left the global bucket two of its four tokens: the other route gets both.
        others = [session.get(server.base_url + "/v1/others", timeout=5) for _ in range(3)]
        total_429 = server.counter.total(429)
    assert [answer.status_code for answer in things] == [200, 200, 429]
    assert [answer.status_code for answer in others] == [200, 200, 429]
    assert total_429 == 2  # one per refused request
    # Retry-After comes from the bucket that refused: the next token in 5 s on the route, 10 s in the global one.
    assert things[-1].headers["Retry-After"] == "5" and others[-1].headers["Retry-After"] == "10"


def test_the_route_limit_is_set_at_run_time_and_off_by_default(session: requests.Session) -> None:
    with EmulatorServer(_router()) as server:
        admin = server.base_url + "/_admin/rate-limit"
        view = session.get(admin, timeout=5).json()
        assert (view["route_rate"], view["route_burst"]) == (None, None)
        assert _statuses(session, server, ["/v1/things/a"] * 30) == [200] * 30
        changed = session.put(admin, json={"route_rate": SLOW, "route_burst": 2}, timeout=5).json()
        assert (changed["route_rate"], changed["route_burst"], changed["rate"]) == (SLOW, 2, None)
        assert _statuses(session, server, ["/v1/things/a"] * 3) == [200, 200, 429]
        session.put(admin, json={"route_rate": None}, timeout=5)
        assert _statuses(session, server, ["/v1/things/a"] * 10) == [200] * 10
        server.set_route_rate_limit(SLOW, burst=1)
        assert _statuses(session, server, ["/v1/things/a", "/v1/things/b", "/v1/others"]) == [200, 429, 200]
        server.reset()  # refills every route's bucket
        assert _statuses(session, server, ["/v1/things/c", "/v1/things/d"]) == [200, 429]
        bad = session.put(admin, json={"route_rate": "fast"}, timeout=5)
        assert bad.status_code == 400 and "route_rate" in bad.json()["error"]
        assert session.get(admin, timeout=5).json()["route_rate"] == SLOW  # the bad value changed nothing
