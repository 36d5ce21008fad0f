"""One validated configuration: defaults run a demo store, every problem is named."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from core.errors import ConfigError
from edge.cli import main
from edge.config import load_config, reference_toml


def test_defaults_run_a_demo_store():
    cfg = load_config()
    assert cfg.store.code == "S001"
    assert cfg.database.synchronous == "FULL"
    assert cfg.offline.stored_value.mode == "online_only"


def test_every_problem_is_reported_with_its_key_path():
    with pytest.raises(ConfigError) as info:
        load_config(
            overrides={
                "store": {"code": "bad code!", "nmae": "x"},
                "offline": {"points": {"mode": "maybe", "daily_limit": -1}},
                "till": {"rounding": "up"},
                "http": {"port": "80"},
                "database": {"checkpoint_interval_ms": 0, "wal_limit_mb": -1},
            }
        )
    problems = info.value.details["problems"]
    assert any(p.startswith("store.code:") for p in problems)
    assert "store.nmae: unknown key" in problems
    assert any(p.startswith("offline.points.mode:") for p in problems)
    assert any(p.startswith("offline.points.daily_limit:") for p in problems)
    assert any(p.startswith("till.rounding:") for p in problems)
    assert any(p.startswith("http.port:") for p in problems)
    assert any(p.startswith("database.checkpoint_interval_ms:") for p in problems)
    assert any(p.startswith("database.wal_limit_mb:") for p in problems)


def test_partial_section_keeps_other_defaults():
    cfg = load_config(overrides={"offline": {"points": {"mode": "floor_limit"}}})
    assert cfg.offline.points.daily_limit == 0
    assert cfg.offline.stored_value.mode == "online_only"


def test_reference_is_a_valid_config(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(reference_toml(), encoding="utf-8")
    assert load_config(path) == load_config()


def test_validate_config_cli_exits_non_zero_naming_keys(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[store]\ncode = "S 1"\n[till]\nsession_hours = 0\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["-c", str(path), "validate-config"])
    assert result.exit_code == ConfigError.code
    assert "store.code" in result.output and "till.session_hours" in result.output
    path.write_text('[store]\ncode = "S002"\n', encoding="utf-8")
    ok = CliRunner().invoke(main, ["-c", str(path), "validate-config"])
    assert ok.exit_code == 0, ok.output


def test_sync_reload_forgets_the_down_cursor(tmp_path):
    from edge.services.context import open_till
    from edge.sync.apply import DOWN_CURSOR, down_cursor, put_setting

    path = tmp_path / "edge.toml"
    path.write_text(f'data_dir = "{tmp_path / "edge"}"\n', encoding="utf-8")
    assert CliRunner().invoke(main, ["-c", str(path), "init"]).exit_code == 0
    till = open_till(load_config(path))
    put_setting(DOWN_CURSOR, 42)
    result = CliRunner().invoke(main, ["-c", str(path), "sync-reload"])
    assert result.exit_code == 0, result.output
    assert "down cursor 42 -> 0" in result.output
    till.db.connect(reuse_if_open=True)
    assert down_cursor() == 0
    till.db.close()
