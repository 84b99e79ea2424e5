"""chartmogul-sync: a custom ChartMogul integration on the Import API."""
