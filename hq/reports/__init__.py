"""Reports: the KPI engine, periods and scopes, and the exports."""
