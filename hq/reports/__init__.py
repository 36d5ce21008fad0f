"""The figures a chain manages by (docs/kpis.md): periods and scopes (periods.py), the
summary tables ingest keeps (summary.py), the KPI queries (kpis.py) and their JSON
routes (api.py)."""
