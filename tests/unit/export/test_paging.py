"""Bounded list walks (`client.follow_pages`) and which Stripe errors set one customer aside.

Pure logic: the page source is a list of pages, and the errors are stripe-python's own classes.
"""

from collections.abc import Callable

import pytest
import stripe

from chartmogul_sync.sources.stripe.client import Page, PagingError, follow_pages, is_permanent_for_object


def pages_after(pages: dict[str | None, Page], asked: list[str | None]) -> Callable[[str | None], Page]:
    def next_page(starting_after: str | None) -> Page:
        asked.append(starting_after)
        return pages[starting_after]

    return next_page


def objects(*ids: str) -> list[dict[str, object]]:
    return [{"id": object_id} for object_id in ids]


def test_a_walk_asks_for_each_page_after_the_last_object_of_the_one_before_until_has_more_is_false() -> None:
    asked: list[str | None] = []
    source = pages_after(
        {
            None: Page(objects("a", "b"), has_more=True),
            "b": Page(objects("c", "d"), has_more=True),
            "d": Page(objects("e"), has_more=False),
        },
        asked,
    )

    walked = [obj["id"] for page in follow_pages(source, "list things") for obj in page.data]

    assert walked == ["a", "b", "c", "d", "e"]
    assert asked == [None, "b", "d"]


def test_a_walk_can_start_after_an_embedded_first_page_and_stops_on_an_empty_page() -> None:
    asked: list[str | None] = []
    source = pages_after({"x": Page(objects("y"), has_more=True), "y": Page([], has_more=True)}, asked)

    assert [len(page.data) for page in follow_pages(source, "lines", starting_after="x")] == [1, 0]
    assert asked == ["x", "y"]


def test_a_cursor_that_does_not_move_fails_loudly_instead_of_asking_for_the_same_page_forever() -> None:
    asked: list[str | None] = []
    # The page after "b" ends on "b" again (a list that ignores starting_after, say).
    source = pages_after({None: Page(objects("a", "b"), has_more=True), "b": Page(objects("b"), has_more=True)}, asked)

    with pytest.raises(PagingError, match="the page after b ends on b again"):
        list(follow_pages(source, "list things"))
    assert asked == [None, "b"]


def test_a_walk_longer_than_its_page_cap_fails_instead_of_paging_on() -> None:
    asked: list[str | None] = []

    def endless(starting_after: str | None) -> Page:
        asked.append(starting_after)
        return Page(objects(f"obj{len(asked)}"), has_more=True)

    with pytest.raises(PagingError, match="more than 5 pages"):
        list(follow_pages(endless, "list things", max_pages=5))
    assert len(asked) == 5


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (stripe.InvalidRequestError("No such customer: 'cus_1'", "id", http_status=404), True),
        (stripe.InvalidRequestError("Invalid parameter", "customer", http_status=400), True),
        (stripe.RateLimitError("Too many requests", http_status=429), False),
        (stripe.AuthenticationError("Invalid API key", http_status=401), False),
        (stripe.PermissionError("Not allowed", http_status=403), False),
        (stripe.InvalidRequestError("Lock timeout", None, http_status=409), False),
        (stripe.APIError("Internal error", http_status=500), False),
        (stripe.APIConnectionError("Connection reset"), False),
        (ValueError("not a Stripe error"), False),
    ],
)
def test_only_a_client_error_about_the_object_sets_a_customer_aside(error: BaseException, permanent: bool) -> None:
    assert is_permanent_for_object(error) is permanent
