"""One default offline policy everywhere: ``online_only`` (the safer for a chain's money).

The till's config, its reference text, core's policy object and the docs say the same."""

from __future__ import annotations

import re
from pathlib import Path

from core.protocol import BALANCE_KINDS, OfflinePolicy
from edge.config import BalancePolicy, EdgeConfig, load_config, reference_toml

ROOT = Path(__file__).resolve().parents[2]


def test_every_balance_kind_defaults_to_online_only():
    cfg = EdgeConfig()
    for kind in BALANCE_KINDS:
        assert getattr(cfg.offline, kind) == BalancePolicy("online_only", 0), kind
        assert getattr(load_config().offline, kind).mode == "online_only", kind
        assert OfflinePolicy(kind).mode == "online_only"


def test_config_reference_shows_online_only_and_no_limit():
    text = reference_toml()
    for kind in BALANCE_KINDS:
        section = text.split(f"[offline.{kind}]\n", 1)[1].split("[", 1)[0]
        assert re.search(r'^mode = "online_only"', section, re.M), section
        assert re.search(r"^daily_limit = 0\b", section, re.M), section
    assert 'floor_limit"' not in text  # no section defaults to it


def test_the_docs_state_the_same_default():
    protocol = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "default for a chain that has published nothing is `online_only`" in protocol
    assert "`online_only` for every kind" in operations
