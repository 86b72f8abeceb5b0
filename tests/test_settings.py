"""The settings table: precedence, clear errors, and every setting documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehrgate.settings import SETTINGS, SettingsError, load_settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text, setting.name
        assert f"`EHRGATE_{setting.name.upper()}`" in text, setting.name


def test_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "ehrgate.yaml"
    cfg.write_text("settings:\n  port: 9000\n  host: 0.0.0.0\n  log_level: DEBUG\n")
    s = load_settings(cfg, environ={"EHRGATE_PORT": "9100"}, overrides={"host": "127.0.0.2"})
    assert s.port == 9100
    assert s.host == "127.0.0.2"
    assert s.log_level == "DEBUG"
    assert load_settings(None, environ={}).port == 8080


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="EHRGATE_PORT.*'port'.*'eighty'"):
        load_settings(None, environ={"EHRGATE_PORT": "eighty"})
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("settings:\n  nosuch: 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'nosuch'"):
        load_settings(cfg, environ={})
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(tmp_path / "missing.yaml", environ={})
    top = tmp_path / "top.yaml"
    top.write_text("data_dir: /somewhere\n")  # a setting outside settings: was silently ignored
    with pytest.raises(SettingsError, match="unknown top-level key 'data_dir'. Settings go under 'settings:'"):
        load_settings(top, environ={})


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("log_level", "LOUD", "one of DEBUG, INFO, WARNING, ERROR"), ("max_page_size", "-1", "1 or more"),
    ("default_page_size", "0", "1 or more"), ("bulk_workers", "-1", "0 or more"), ("port", "70000", "0 to 65535"),
    ("base_url", "notaurl", "absolute http"), ("base_url", "https://ehr.example.org/?x=1", "no query"),
    ("engine_batch_size", "0", "1 or more"), ("access_token_lifetime", "-1", "0 or more"),
])
def test_values_out_of_range_stop_with_a_sentence(name: str, value: str, expected: str) -> None:
    """Before, these were taken as given: a page size of -1 answered every search with nothing, a log
    level of LOUD ended in a traceback from the HTTP server, a base URL of "notaurl" was printed as
    the FHIR base."""
    with pytest.raises(SettingsError, match=f"EHRGATE_{name.upper()}.*'{name}'.*{expected}"):
        load_settings(None, environ={f"EHRGATE_{name.upper()}": value})


def test_choices_take_any_case_and_limits_are_inclusive() -> None:
    s = load_settings(None, environ={"EHRGATE_LOG_LEVEL": "debug", "EHRGATE_BULK_WORKERS": "0",
                                     "EHRGATE_BASE_URL": "https://ehr.example.org/base", "EHRGATE_PORT": "0"})
    assert (s.log_level, s.bulk_workers, s.public_base, s.port) == ("DEBUG", 0, "https://ehr.example.org/base", 0)


def test_database_url_defaults_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    s = load_settings(None, environ={}, overrides={"data_dir": str(tmp_path)})
    assert s.effective_database_url == f"sqlite:///{tmp_path}/ehrgate.sqlite3"


def test_sqlite_mmap_mb_sizes_or_turns_off_the_memory_map_of_both_stores(tmp_path: Path) -> None:
    from ehrgate.app import open_store
    from ehrgate.engine import open_messages
    from ehrgate.fhir.store.engine import MMAP_BYTES

    def mmap_sizes(mb: int | None) -> tuple[int, int]:
        overrides: dict[str, object] = {"data_dir": str(tmp_path / str(mb))}
        if mb is not None:
            overrides["sqlite_mmap_mb"] = mb
        store = open_store(load_settings(None, environ={}, overrides=overrides))
        messages = open_messages(store)
        try:
            with store.reader() as conn:
                fhir = int(conn.exec_driver_sql("PRAGMA mmap_size").scalar_one())
            with messages.engine.connect() as conn:
                engine = int(conn.exec_driver_sql("PRAGMA mmap_size").scalar_one())
            return fhir, engine
        finally:
            messages.close()
            messages.engine.dispose()
            store.engine.dispose()

    assert mmap_sizes(None) == (MMAP_BYTES, MMAP_BYTES)
    assert mmap_sizes(0) == (0, 0)
    assert mmap_sizes(64) == (64 * 1024 * 1024, 64 * 1024 * 1024)
    with pytest.raises(ValueError, match="'sqlite_mmap_mb' has value -1. Expected 0"):
        mmap_sizes(-1)
