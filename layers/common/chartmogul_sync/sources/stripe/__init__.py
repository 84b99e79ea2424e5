"""The Stripe exporter: one customer snapshot per changed customer, onto the raw queue.

- `client`: the pinned `stripe.StripeClient`, retried and counted inside the Lambda's time budget (`StripeApi`);
- `events`: which customer a Stripe event is about;
- `snapshots`: one assembly of a customer's snapshot for both paths (per customer, and staged backfill pages);
- `incremental`: events since the cursor → changed customers; one-customer sync;
- `backfill`: global lists staged in S3 by customer, checkpointed, continued;
- `invocation`: the export function's input; `run`: what the modes share; `realtime`: the Stripe events function's
  batches; `wiring`: how both export functions build their exporter, and what the local runtime
  replaces (continuations, clock).
"""
