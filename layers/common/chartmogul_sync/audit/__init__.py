"""The audit: ChartMogul against what Stripe's current data says it should hold (see audit/service.py)."""
