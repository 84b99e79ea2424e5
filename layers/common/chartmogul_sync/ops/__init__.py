"""Operating the sync on your own accounts: check, snapshot, plan, local sync, audit, status (ops/cli.py)."""
