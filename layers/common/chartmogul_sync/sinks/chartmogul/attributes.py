"""Custom attributes are created (typed) before a customer update sets them, as ChartMogul documents.

"Attribute must first be created using the POST call" (https://dev.chartmogul.com/reference/update-custom-attributes-of-customer):
`POST /customers/{uuid}/attributes/custom` with `{"custom": [{"type", "key", "value"}]}` creates the attribute
with its type and sets this customer's value (https://dev.chartmogul.com/reference/add-custom-attributes-to-customer);
`PATCH /customers/{uuid}` then takes them as a key → value map. A customer created with typed attributes creates
them too, but bulk imports carry no attributes at all (docs/sources.md#cm-bulk-import), so the update after a bulk
import must create them first; so must an update that brings a metadata key ChartMogul has never seen.

Definitions are account-wide: once a key is created, later customers only need the update. This object remembers,
for its process, the (key, type) pairs it created or saw created, so each is posted once per process.
"""

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import chartmogul

from .client import ChartMogulApi, TimeBudget


class CustomAttributeDefinitions:
    def __init__(self, api: ChartMogulApi) -> None:
        self._api = api
        self._created: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._creating = threading.Lock()

    def ensure_created(
        self, customer_external_id: str, customer_uuid: str, custom: Iterable[Mapping[str, Any]], budget: TimeBudget
    ) -> bool:
        """Create (on this customer, with its values) the typed attributes not yet created; True if a request
        was made. Raises ChartMogulError like any call (the caller routes it)."""
        wanted = [dict(item) for item in custom if item.get("type") and item.get("key")]
        if not self._missing(wanted):
            return False
        # Customers applied side by side (bulk.py) bring the same new keys at once: one creates them, the others
        # wait and then find them created, instead of each posting the same definitions.
        with self._creating:
            missing = self._missing(wanted)
            if not missing:
                return False
            body = {"custom": [{"type": i["type"], "key": i["key"], "value": i.get("value")} for i in missing]}
            self._api.call(
                f"create custom attributes {', '.join(i['key'] for i in missing)} (customer {customer_external_id})",
                lambda cfg: chartmogul.CustomAttributes.add(cfg, uuid=customer_uuid, data=body).get(),
                budget,
            )
            self.remember(missing)
        return True

    def _missing(self, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            return [item for item in wanted if (item["key"], item["type"]) not in self._created]

    def remember(self, custom: Iterable[Mapping[str, Any]]) -> None:
        """Note attributes known to exist (created by a customer create that carried them typed)."""
        with self._lock:
            self._created.update((str(i["key"]), str(i["type"])) for i in custom if i.get("type") and i.get("key"))
