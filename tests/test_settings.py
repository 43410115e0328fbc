from pathlib import Path

import pytest

from workbench.errors import ConfigError
from workbench.settings import load_settings


def test_defaults_live_under_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    s = load_settings()
    assert s.home == tmp_path / ".workbench"
    assert s.oltp_url_resolved == f"sqlite:///{tmp_path / '.workbench' / 'workbench.db'}"
    assert s.catalog_uri_resolved.endswith(".workbench/catalog.db")
    assert s.warehouse_resolved == (tmp_path / ".workbench" / "warehouse").as_uri()


def test_environment_beats_config_file_and_overrides_beat_both(tmp_path, monkeypatch):
    home = tmp_path / "h"
    home.mkdir()
    (home / "workbench.toml").write_text('[workbench]\ncommit_retries = 7\ns3_region = "eu-west-1"\n')
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.setenv("WORKBENCH_COMMIT_RETRIES", "9")
    s = load_settings()
    assert s.commit_retries == 9
    assert s.s3_region == "eu-west-1"
    assert load_settings(commit_retries=2).commit_retries == 2


def test_bad_config_file_names_the_file(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("[workbench\n")
    monkeypatch.setenv("WORKBENCH_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
        load_settings()


def test_missing_config_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_invalid_value_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="commit_retries"):
        load_settings(home=tmp_path, commit_retries=0)


def test_credentials_key_file_is_private_and_stable(tmp_path):
    s = load_settings(home=tmp_path / "h")
    key = s.credentials_key
    path = Path(s.home / "secret.key")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_settings(home=tmp_path / "h").credentials_key == key
    assert load_settings(home=tmp_path / "h", secret_key="k1").credentials_key != key
