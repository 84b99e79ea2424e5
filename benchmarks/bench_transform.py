"""Benchmark: Stripe invoices mapped per second by the transform, on one core (goal: ≥ 20,000/s).

Run as a plain script: `.venv/bin/python benchmarks/bench_transform.py [customers] [months]`. It prints figures;
it asserts nothing about time. Each customer is a realistic year: a two-item subscription (plan + seats) with
tax and a coupon, a mid-year upgrade with proration lines, a one-off item, a failed attempt, payments, a refund.
Two figures: the mapping alone (snapshot already parsed, as the handler has it after `load_message`), and the
whole record's work (parse the message JSON, map, serialise the upload message).
"""

from __future__ import annotations

import gc
import sys
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chartmogul_sync.models import RawMessage, UploadMessage
from chartmogul_sync.transform import MappingConfig, map_snapshot
from tests.fixtures.stripe_objects import DAY, Line, SnapshotBuilder, at


def customer_year(index: int, months: int) -> SnapshotBuilder:
    customer_id = f"cus_{index:06d}"
    builder = SnapshotBuilder(customer_id=customer_id, metadata={"crm-id": str(index), "segment": "smb"})
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_price("price_biz_m", "prod_biz", "Business", 25_000)
    builder.add_price("price_seat_m", "prod_seat", "Seat", 1_500)
    builder.add_subscription("sub_1", [("si_1", "price_biz_m", 1), ("si_2", "price_seat_m", 4)])
    upgrade = months // 2
    for month in range(months):
        start, end = at(2025 + month // 12, month % 12 + 1, 1), at(2025 + (month + 1) // 12, (month + 1) % 12 + 1, 1)
        price = "price_pro_m" if month < upgrade else "price_biz_m"
        amount = 10_000 if month < upgrade else 25_000
        lines = [
            Line(
                f"il_{index}_{month}_a",
                amount,
                start,
                end,
                price_id=price,
                subscription_item="si_1",
                subscription="sub_1",
                discounts=[("di_1", amount // 10)],
                taxes=[(amount // 50, "exclusive")],
            ),
            Line(
                f"il_{index}_{month}_b",
                6_000,
                start,
                end,
                price_id="price_seat_m",
                subscription_item="si_2",
                subscription="sub_1",
                quantity=4,
                taxes=[(120, "exclusive")],
            ),
        ]
        if month == upgrade:
            half = start + 14 * DAY
            lines += [
                Line(
                    f"il_{index}_{month}_c",
                    -5_000,
                    half,
                    end,
                    price_id="price_pro_m",
                    subscription_item="si_1",
                    subscription="sub_1",
                    proration=True,
                ),
                Line(
                    f"il_{index}_{month}_d",
                    12_500,
                    half,
                    end,
                    price_id="price_biz_m",
                    subscription_item="si_1",
                    subscription="sub_1",
                    proration=True,
                ),
            ]
        if month == 0:
            lines.append(
                Line(f"il_{index}_setup", 20_000, start, start, invoice_item=f"ii_{index}", description="Setup")
            )
        invoice_id = f"in_{index}_{month:02d}"
        builder.add_invoice(invoice_id, lines, subscription="sub_1", pay_with=f"pi_{index}_{month}")
        if month == 1:
            builder.add_charge(f"ch_{index}_declined", f"pi_{index}_{month}", 1_000, start + 600, "failed")
    builder.add_refund(f"re_{index}", f"ch_{index}_00", f"pi_{index}_0", 2_000, at(2025, 1, 20))
    return builder


ROUNDS = 3


def main() -> None:
    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    months = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    config = MappingConfig()
    snapshot_time = datetime(2026, 1, 1, tzinfo=UTC)
    snapshots = [customer_year(index, months).snapshot() for index in range(customers)]
    bodies = [
        RawMessage(
            customer_external_id=s.customer_id, snapshot_time=snapshot_time, correlation_id="bench", payload=s
        ).model_dump_json()
        for s in snapshots
    ]
    invoices = sum(len(s.invoices) for s in snapshots)
    lines = sum(len(i["lines"]["data"]) for s in snapshots for i in s.invoices)
    map_snapshot(snapshots[0], config, snapshot_time=snapshot_time)  # warm-up (imports, pydantic schema caches)
    # The inputs of all rounds stay in memory; a Lambda holds one batch (10 records). Keep the garbage collector
    # from re-scanning them on every collection, which would measure the benchmark's memory, not the mapping.
    gc.collect()
    gc.freeze()

    def mapping() -> None:
        for snapshot in snapshots:
            map_snapshot(snapshot, config, snapshot_time=snapshot_time)

    def whole() -> None:
        for body in bodies:
            message = RawMessage.model_validate_json(body)
            assert message.payload is not None
            bundle = map_snapshot(message.payload, config, snapshot_time=message.snapshot_time)
            UploadMessage(
                customer_external_id=message.customer_external_id,
                snapshot_time=message.snapshot_time,
                correlation_id=message.correlation_id,
                payload=bundle,
            ).model_dump_json(exclude_none=True)

    # CPU time of this process, best of a few rounds: on a shared machine the wall clock also counts the time
    # other processes had the core; "per second on one core" is per second of CPU.
    mapping_only = min(timeit.repeat(mapping, number=1, repeat=ROUNDS, timer=time.process_time))
    whole_record = min(timeit.repeat(whole, number=1, repeat=ROUNDS, timer=time.process_time))

    print(f"transform benchmark: {customers} customers, {invoices} invoices, {lines} lines, one process (one core),")
    print(f"best of {ROUNDS} rounds, per CPU second")
    print(f"  mapping only (parsed snapshot → bundle):        {invoices / mapping_only:>10,.0f} invoices/s")
    print(f"  whole record (JSON → bundle → upload JSON):     {invoices / whole_record:>10,.0f} invoices/s")
    print("  goal: 20,000 invoices/s")


if __name__ == "__main__":
    main()
