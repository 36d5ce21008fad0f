"""Till services: plain functions taking the till context (database, config, keys, clock)."""
