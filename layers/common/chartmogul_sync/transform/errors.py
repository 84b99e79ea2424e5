"""What the mapping raises when a snapshot cannot be turned into a bundle."""


class MappingError(ValueError):
    """A snapshot that cannot be mapped: names the Stripe object, the field and why, so a user can act on it.

    The transform handler sends the snapshot to the bad-records queue with these three; it never retries it.
    """

    def __init__(self, object_id: str, field: str, reason: str) -> None:
        self.object_id = object_id
        self.field = field
        self.reason = reason
        super().__init__(f"{object_id}: {field}: {reason}")


class CustomerExcluded(Exception):
    """The mapping config excludes this customer: nothing is imported, and that is not an error."""

    def __init__(self, customer_id: str, reason: str) -> None:
        self.customer_id = customer_id
        self.reason = reason
        super().__init__(f"{customer_id}: {reason}")
