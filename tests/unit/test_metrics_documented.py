"""Every metric the functions publish, and every custom metric the alarms watch, is documented in
docs/operations.md (its name in backticks), so an operator never meets a metric nobody explained."""

import ast
import re
from types import SimpleNamespace

from localdev.aws.template import DEFAULT_TEMPLATE, REPO_ROOT, Template

OPERATIONS = REPO_ROOT / "docs" / "operations.md"
METRIC_NAME = re.compile(r"^[A-Z][A-Za-z]+_?$")
NAMESPACE = "ChartMogulSync"


def published_metric_names() -> set[str]:
    """The names the handlers pass to `add_metric`: literals, f-string prefixes (ending in `_`), and, where the name
    is a variable, the metric-like literals of the tables it comes from (tuples' first items, dict values)."""
    names: set[str] = set()
    for handler in REPO_ROOT.glob("functions/*/app.py"):
        tree = ast.parse(handler.read_text())
        tables: set[str] = set()
        for node in ast.walk(tree):
            # String literals only: a `False` or a number in a table is never a metric name.
            if isinstance(node, ast.Tuple) and node.elts:
                tables.update(_strings([node.elts[0]]))
            if isinstance(node, ast.Dict):
                tables.update(_strings(node.values))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_metric"):
                continue
            (name,) = [k.value for k in node.keywords if k.arg == "name"]
            if isinstance(name, ast.Constant):
                names.add(str(name.value))
            elif isinstance(name, ast.JoinedStr) and isinstance(name.values[0], ast.Constant):
                names.add(str(name.values[0].value))
            else:
                names.update(t for t in tables if METRIC_NAME.match(t))
    return names


def layer_metric_names() -> set[str]:
    """The tables of counts the export handlers take from the layer and publish as they are (both export
    functions share them: `wiring.run_metrics`, `RealtimeOutcome.metrics`)."""
    from chartmogul_sync.sources.stripe.client import StripeRequestStats
    from chartmogul_sync.sources.stripe.realtime import RealtimeOutcome
    from chartmogul_sync.sources.stripe.run import ExportStats
    from chartmogul_sync.sources.stripe.wiring import run_metrics

    exporter: object = SimpleNamespace(stats=ExportStats(), api=SimpleNamespace(stats=StripeRequestStats()))
    outcome = RealtimeOutcome(
        run_id="r",
        events=0,
        customers_enqueued=0,
        customers_already_exported=0,
        customers_set_aside=0,
        events_rejected=0,
        events_skipped=0,
        failed=[],
    )
    return {name for name, _ in [*run_metrics(exporter), *outcome.metrics()]}  # type: ignore[arg-type]


def _strings(nodes: list[ast.expr]) -> set[str]:
    return {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def alarmed_metric_names() -> set[str]:
    template = Template.load(DEFAULT_TEMPLATE)
    return {
        str(alarm.properties["MetricName"])
        for alarm in template.alarms.values()
        if alarm.properties.get("Namespace") == NAMESPACE
    }


def documented(name: str, text: str) -> bool:
    return f"`{name}`" in text or (name.endswith("_") and f"`{name}<" in text)


def test_every_published_and_alarmed_metric_is_documented() -> None:
    text = OPERATIONS.read_text()
    names = published_metric_names() | layer_metric_names() | alarmed_metric_names()
    assert {"IncrementalRunsSucceeded", "StripeAuthFailures", "ChartMogulAuthFailures", "Bundles_"} <= names
    assert {"StripeRequests", "StripeEventsReceived", "StripeEventsFailed"} <= layer_metric_names()
    assert sorted(n for n in names if not documented(n, text)) == []
