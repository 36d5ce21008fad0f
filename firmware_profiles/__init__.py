"""Device models as data: one JSON file per model, loaded by ``edge.devices.profiles``."""
