"""The mapping config (YAML, errors that name the key) and the `cmsync transform` / `cmsync config check` commands."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from chartmogul_sync.cli import main
from chartmogul_sync.models import CustomerBundle, RawMessage
from chartmogul_sync.transform import MappingConfig, MappingConfigError, load_mapping_config, map_snapshot
from chartmogul_sync.transform.config import parse_mapping_config
from tests.fixtures.stripe_objects import Line, SnapshotBuilder, at, moment

EXAMPLE = Path(__file__).parents[3] / "events" / "mapping-config.example.yaml"
JAN, FEB = at(2025, 1, 1), at(2025, 2, 1)


def test_no_file_and_an_empty_file_are_the_documented_defaults() -> None:
    assert load_mapping_config(None) == MappingConfig() == parse_mapping_config("")
    defaults = MappingConfig()
    assert (defaults.subscription_id.value, defaults.invoices.void.value, defaults.invoices.uncollectible.value) == (
        "item",
        "exclude",
        "include",
    )
    assert (defaults.metered.value, defaults.unpaid.value, defaults.deleted_customers.value) == (
        "subscription",
        "no_action",
        "keep",
    )


def test_the_example_file_is_valid_and_says_what_it_sets() -> None:
    config = load_mapping_config(EXAMPLE)

    assert config.plans.plan_external_id("price_1PzLegacyMonthly") == "pro-monthly"
    assert config.plans.plan_external_id("price_other") == "price_other"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("invoices:\n  void: maybe\n", "invoices.void: Input should be 'include' or 'exclude'"),
        ("invoice:\n  void: include\n", "invoice: unknown key"),
        (
            "plans:\n  name_template: '{product} {tier}'\n",
            "plans.name_template: Value error, unknown placeholder(s) {tier}",
        ),
        (
            "customers:\n  attributes:\n    metadata:\n      a:\n        type: Text\n",
            "customers.attributes.metadata.a.type",
        ),
        ("exclude:\n  prices: price_1\n", "exclude.prices: Input should be a valid list"),
        ("version: 2\n", "version: Input should be 1"),
        (
            "plans:\n  overrides:\n"
            "    price_a: {external_id: pro, name: Pro}\n    price_b: {external_id: pro, name: Pro+}\n",
            "overrides.price_b.name: prices price_a and price_b are merged into plan 'pro'",
        ),
        ("invoices: [void\n", "line 2, column 1: not valid YAML"),
        ("- just\n- a list\n", "(top level): expected a mapping of keys"),
    ],
)
def test_config_errors_name_the_key(text: str, expected: str) -> None:
    with pytest.raises(MappingConfigError) as raised:
        parse_mapping_config(text, source="mapping.yaml")

    assert any(expected in problem for problem in raised.value.problems), raised.value.problems


def snapshot_file(tmp_path: Path, builder: SnapshotBuilder) -> Path:
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(builder.raw()))
    return path


def simple_customer() -> SnapshotBuilder:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)])
    builder.add_invoice(
        "in_0001",
        [Line("il_1", 10_000, JAN, FEB, price_id="price_pro_m", subscription_item="si_1", subscription="sub_1")],
        subscription="sub_1",
        pay_with="pi_1",
    )
    return builder


def test_transform_prints_the_bundle_of_a_snapshot_file(tmp_path: Path) -> None:
    builder = simple_customer()

    result = CliRunner().invoke(main, ["transform", str(snapshot_file(tmp_path, builder))])

    assert result.exit_code == 0, result.output
    printed = CustomerBundle.model_validate_json(result.stdout)
    assert printed == map_snapshot(builder.snapshot())
    assert printed.invoices[0].line_items[0].amount_in_cents == 10_000


def test_transform_reads_a_raw_queue_message_and_a_config(tmp_path: Path) -> None:
    message = RawMessage(
        customer_external_id="cus_Q1",
        snapshot_time=moment(FEB),
        correlation_id="run-7",
        payload=simple_customer().snapshot(),
    )
    message_path = tmp_path / "message.json"
    message_path.write_text(message.model_dump_json())
    config_path = tmp_path / "mapping.yaml"
    config_path.write_text("subscription_id: subscription\n")

    result = CliRunner().invoke(main, ["transform", str(message_path), "--config", str(config_path)])

    assert result.exit_code == 0, result.output
    bundle = CustomerBundle.model_validate_json(result.stdout)
    assert bundle.snapshot_time == moment(FEB)
    assert bundle.invoices[0].line_items[0].subscription_external_id == "sub_1"  # type: ignore[union-attr]


def test_transform_of_unmappable_input_exits_non_zero_naming_object_and_field(tmp_path: Path) -> None:
    raw = simple_customer().raw()
    del raw["invoices"][0]["lines"]["data"][0]["period"]

    path = tmp_path / "broken.json"
    path.write_text(json.dumps(raw))
    result = CliRunner().invoke(main, ["transform", str(path)])

    assert result.exit_code == 1
    assert "in_0001: lines.data.0.period: Field required" in result.output
    assert "Traceback" not in result.output


def test_transform_of_a_file_that_is_no_snapshot_says_so(tmp_path: Path) -> None:
    path = tmp_path / "nonsense.json"
    path.write_text('{"customer": {"name": "no id"}}')

    result = CliRunner().invoke(main, ["transform", str(path)])

    assert result.exit_code == 1
    assert "not a customer snapshot" in result.output and "api_version: Field required" in result.output


def test_transform_with_a_broken_config_names_the_key(tmp_path: Path) -> None:
    config_path = tmp_path / "mapping.yaml"
    config_path.write_text("metered: sometimes\n")

    result = CliRunner().invoke(
        main, ["transform", str(snapshot_file(tmp_path, simple_customer())), "--config", str(config_path)]
    )

    assert result.exit_code == 1
    assert "metered: Input should be 'subscription' or 'one_time'" in result.output


def test_config_check(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("invoices:\n  void: keep\nplan:\n  name_template: x\n")

    good = CliRunner().invoke(main, ["config", "check", str(EXAMPLE)])
    bad = CliRunner().invoke(main, ["config", "check", str(broken)])

    assert good.exit_code == 0 and "valid mapping config" in good.output
    assert bad.exit_code == 1
    assert "invoices.void: Input should be 'include' or 'exclude'" in bad.output
    assert "plan: unknown key" in bad.output


def test_the_example_snapshot_dry_runs() -> None:
    snapshot = EXAMPLE.parent / "customer-snapshot.example.json"

    result = CliRunner().invoke(main, ["transform", str(snapshot), "--config", str(EXAMPLE)])

    assert result.exit_code == 0, result.output
    bundle = CustomerBundle.model_validate_json(result.stdout)
    prorated = [line for i in bundle.invoices for line in i.line_items if getattr(line, "prorated", False)]
    assert prorated and any(line.amount_in_cents < 0 for line in prorated)  # the upgrade's credit
