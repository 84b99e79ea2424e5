"""One Stripe list read several pages at a time: its creation-time range cut into windows, each with its own cursor.

Why: a list page takes Stripe a few hundred milliseconds to answer, so a walk that asks for one page after another
reads a few pages a second, a tenth of what the export may ask (`Settings.stripe_requests_per_second`): at 300 ms
a page, a backfill of 100,000 customers (about 39,000 pages) would list for three and a half hours instead of half
an hour. Stripe lists newest first and filters every list by `created` (`gte`, `lt`, `lte`;
https://docs.stripe.com/api/pagination, docs/sources.md#stripe-pagination), so a list's range can be cut into
disjoint windows of seconds, each walked with its own `starting_after`, side by side.

How a list is cut: nobody knows in advance where a list's objects lie in time (an account grows; a customer's
invoices follow its signup), so a list starts as one window, the whole range. When a page comes back and a lane is
free, its window may be cut in two: what it has left, from where it is down to its lower bound, is split at the
middle of its time span; the window keeps its cursor and the newer half, a new window takes the older one. A window
is cut only if, at the density it has read so far, each half would hold `MIN_WINDOW_PAGES` pages: every window ends
on a page that is not full, so the cuts cost at most one request per `MIN_WINDOW_PAGES` pages.

Why it is complete: the windows are half-open second ranges `[created_gte, created_lt)` that tile the range (the
oldest keeps no lower bound, the newest no upper bound), and a cut only moves the boundary below what a window has
read, so each object is in exactly one window's part still to read or already read. The windows' state is what the
checkpoint stores: the state after the pages handed to the caller, never a page still in flight.

Several lists share the lanes (`WindowedLists`): a list of few pages cannot be cut far, and Stripe limits each
endpoint apart (25 requests/s), so the export reads its independent lists together.

Example::

    invoices = ListSpec("invoices", fetch_invoices, {"status": "paid"}, [ListWindow()], floor=1_600_000_000)
    charges = ListSpec("charges", fetch_charges, {}, [ListWindow()], floor=1_600_000_000)
    lists = WindowedLists([invoices, charges], lanes=16)
    for name, page in lists.pages():
        stage(name, page.data)
        if out_of_time():
            lists.stop()  # no new requests; the pages in flight still come
    lists.windows("invoices")  # [] once read whole; else what a continuation resumes from
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import stripe
from pydantic import BaseModel, ConfigDict

from .client import MAX_PAGES_PER_LIST, Page, PagingError

# A window is cut only if each part would hold this many pages (see the module docstring).
MIN_WINDOW_PAGES = 5
# The oldest `created` a Stripe object can have, for estimating how much of an unbounded window is left: Stripe
# opened in 2011 (2011-01-01T00:00:00Z). Only an estimate: the oldest window never gets a lower bound.
STRIPE_EPOCH = 1_293_840_000


class ListWindow(BaseModel):
    """One window of a list: the objects created in `[created_gte, created_lt)`, read newest first."""

    model_config = ConfigDict(frozen=True)

    created_gte: int | None = None  # None: no lower bound
    created_lt: int | None = None  # None: no upper bound
    starting_after: str | None = None  # the last object read
    last_created: int | None = None  # ...its `created`, to restart from if that object is deleted meanwhile
    created_lte: int | None = None  # set once the window had to restart from `last_created`
    top_created: int | None = None  # the `created` of the first object read: with `pages_read`, the density
    pages_read: int = 0

    def query(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The list request for this window's next page: `params` with the window's bounds and cursor."""
        created: dict[str, int] = dict(params.get("created", {}))
        if self.created_gte is not None:
            created["gte"] = max(created.get("gte", self.created_gte), self.created_gte)
        if self.created_lt is not None:
            created["lt"] = min(created.get("lt", self.created_lt), self.created_lt)
        if self.created_lte is not None:
            created["lte"] = min(created.get("lte", self.created_lte), self.created_lte)
        query = {key: value for key, value in params.items() if key != "created"}
        if created:
            query["created"] = created
        if self.starting_after is not None:
            query["starting_after"] = self.starting_after
        return query

    def after(self, page: Page) -> ListWindow:
        """The window once `page` is read."""
        if not page.data:
            return self.model_copy(update={"pages_read": self.pages_read + 1})
        first, last = page.data[0].get("created"), page.data[-1].get("created")
        return self.model_copy(
            update={
                "starting_after": page.last_id,
                "last_created": last if isinstance(last, int) else self.last_created,
                "top_created": self.top_created if self.top_created is not None else _int_or_none(first),
                "pages_read": self.pages_read + 1,
            }
        )

    def restarted(self) -> ListWindow:
        """The window once its cursor object was deleted: from that object's second again (docs/sources.md
        #stripe-pagination: checkpoint the window boundary). Objects of that second are read twice; whoever
        stages them keeps one per id."""
        return self.model_copy(update={"starting_after": None, "created_lte": self.last_created})

    def pages_left(self, floor: int) -> float | None:
        """Pages still to read, at the density read so far; None before a page with a time span was read."""
        if self.top_created is None or self.last_created is None or self.pages_read == 0:
            return None
        low = self.created_gte if self.created_gte is not None else floor
        span_read = max(self.top_created - self.last_created, 1)
        return self.pages_read * max(self.last_created - low, 0) / span_read

    def cut(self, parts: int, floor: int) -> list[ListWindow]:
        """This window and `parts - 1` new ones below it, splitting what it has left into equal spans of time.

        The first keeps the cursor (and the objects of `last_created`'s second); a window that cannot be split
        into `parts` whole seconds comes back alone.
        """
        if parts < 2 or self.last_created is None:
            return [self]
        low = self.created_gte if self.created_gte is not None else min(floor, self.last_created)
        span = self.last_created - low
        if span < parts:
            return [self]
        bounds = [self.last_created - span * i // parts for i in range(1, parts)]  # strictly decreasing, > low
        windows = [self.model_copy(update={"created_gte": bounds[0]})]
        uppers, lowers = bounds, [*bounds[1:], self.created_gte]
        windows.extend(
            ListWindow(created_gte=lower, created_lt=upper) for upper, lower in zip(uppers, lowers, strict=True)
        )
        return windows


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


class _Restart:
    """What a window's request answers when its cursor object is gone."""


@dataclass(frozen=True)
class ListSpec:
    """One list of a `WindowedLists`: how to ask for a page, its filter, its windows left, where it probably
    begins (`floor`, for estimating how much a window has left)."""

    name: str
    fetch: Callable[[dict[str, Any]], Page]
    params: Mapping[str, Any]
    windows: list[ListWindow]
    floor: int


WindowKey = tuple[str, int]


class WindowedLists:
    """The pages of one or more lists, read by up to `lanes` windows side by side, handed over in the caller's
    thread as `(list name, page)`.

    Several lists at once, because a list of few pages cannot be cut far (`MIN_WINDOW_PAGES`) and Stripe limits
    each endpoint apart from the whole (25 requests/s an endpoint, docs/sources.md#stripe-rate-limits): lanes a
    list cannot use, another takes. Each `fetch` runs in worker threads, so it must be thread-safe (StripeApi
    is) and keep to its endpoint's limit. Nothing but `pages()` touches the windows, so the caller can read
    `windows(name)` between pages for a checkpoint that holds exactly the pages it has been given.
    """

    def __init__(
        self, lists: list[ListSpec], *, lanes: int, on_restart: Callable[[str, ListWindow], None] | None = None
    ) -> None:
        if lanes < 1:
            raise ValueError("a list needs at least one lane")
        self._specs = {spec.name: spec for spec in lists}
        self._windows: dict[WindowKey, ListWindow] = {
            (spec.name, index): window for spec in lists for index, window in enumerate(spec.windows)
        }
        self._next_index = {spec.name: len(spec.windows) for spec in lists}
        self._lanes = lanes
        self._on_restart = on_restart
        self._stopping = False

    def windows(self, name: str) -> list[ListWindow]:
        """What is left to read of one list, newest window first: [] once it is read whole."""
        left = [window for (list_name, _), window in self._windows.items() if list_name == name]
        return sorted(left, key=lambda w: -(w.created_lt if w.created_lt is not None else 1 << 62))

    def finished(self, name: str | None = None) -> bool:
        """Whether one list (or, without a name, every list) is read whole."""
        return not any(name is None or list_name == name for list_name, _ in self._windows)

    def stop(self) -> None:
        """Ask for no new page: the pages already asked for still come out of `pages()`, then it ends."""
        self._stopping = True

    def pages(self) -> Iterator[tuple[str, Page]]:
        with ThreadPoolExecutor(max_workers=self._lanes, thread_name_prefix="stripe-list") as pool:
            in_flight: dict[Future[Page | _Restart], WindowKey] = {}
            # Oldest windows of each list first, lists in the order given: the biggest lists start at once.
            waiting: deque[WindowKey] = deque(sorted(self._windows, key=lambda key: key[1]))

            try:
                # Bounded like every list walk: each turn takes in at least one answer.
                for _ in range(MAX_PAGES_PER_LIST):
                    while waiting and len(in_flight) < self._lanes and not self._stopping:
                        key = waiting.popleft()
                        in_flight[pool.submit(self._page_or_restart, key, self._windows[key])] = key
                    if not in_flight:
                        return
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        key = in_flight.pop(future)
                        answer = future.result()  # a failure ends the walk; the checkpoint has what came before
                        page = self._take(key, answer)
                        if key in self._windows:
                            free = self._lanes - len(in_flight) - len(waiting) - 1
                            waiting.extend(self._cut(key, free))
                            waiting.appendleft(key)
                        if page is not None:
                            yield key[0], page
                raise PagingError(f"lists {', '.join(self._specs)}: more than {MAX_PAGES_PER_LIST} pages in one walk")
            finally:
                # A failure or an early close: the pages in flight are dropped (a resume asks for them again).
                for future in in_flight:
                    future.cancel()

    def _page_or_restart(self, key: WindowKey, window: ListWindow) -> Page | _Restart:
        spec = self._specs[key[0]]
        try:
            return spec.fetch(window.query(spec.params))
        except stripe.InvalidRequestError as error:
            if error.param != "starting_after" or window.last_created is None:
                raise
            return _Restart()

    def _take(self, key: WindowKey, answer: Page | _Restart) -> Page | None:
        window = self._windows[key]
        if isinstance(answer, _Restart):
            self._windows[key] = window.restarted()
            if self._on_restart is not None:
                self._on_restart(key[0], window)
            return None
        if answer.has_more and answer.last_id is not None and answer.last_id == window.starting_after:
            raise PagingError(
                f"list {key[0]}: the page after {window.starting_after} ends on {window.starting_after} again"
            )
        if not answer.has_more or answer.last_id is None:
            del self._windows[key]
        else:
            self._windows[key] = window.after(answer)
        return answer

    def _cut(self, key: WindowKey, free_lanes: int) -> list[WindowKey]:
        """Cut the window in two if a lane is free and each half would hold MIN_WINDOW_PAGES; the new window's key."""
        if free_lanes < 1 or self._stopping:
            return []
        window, floor = self._windows[key], self._specs[key[0]].floor
        pages_left = window.pages_left(floor)
        if pages_left is None:
            return []
        # In two at most: a list whose lower end is only guessed (the customers list begins at STRIPE_EPOCH as far
        # as anyone knows) wastes one request on each empty window, so halving costs the fewest; and the lanes fill
        # fast all the same, one, two, four, eight windows a round trip.
        parts = min(2, int(pages_left // MIN_WINDOW_PAGES))
        first, *new = window.cut(parts, floor)
        self._windows[key] = first
        keys: list[WindowKey] = []
        for window in new:
            new_key = (key[0], self._next_index[key[0]])
            self._next_index[key[0]] += 1
            self._windows[new_key] = window
            keys.append(new_key)
        return keys
