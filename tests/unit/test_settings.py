import pytest

from config.settings import SCHEMA, SettingsError, load_settings


def test_example_config_documents_every_setting():
    import tomllib
    from pathlib import Path
    example = Path(__file__).resolve().parents[2] / "contrib" / "abonent.toml.example"
    document = tomllib.loads(example.read_text())
    for section, keys in SCHEMA.items():
        present = document if not section else document[section]
        assert set(keys) <= set(present), section
    load_settings(example, environ={})


def test_env_overrides_the_file_and_types_are_checked(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('[radius]\nauth_port = 1645\n')
    settings = load_settings(path, environ={"ABONENT_RADIUS_ACCT_PORT": "1646"})
    assert settings.get("radius", "auth_port") == 1645
    assert settings.get("radius", "acct_port") == 1646
    with pytest.raises(SettingsError, match="ABONENT_RADIUS_ACCT_PORT must be an integer"):
        load_settings(path, environ={"ABONENT_RADIUS_ACCT_PORT": "many"})


@pytest.mark.parametrize("text, message", [
    ("[radius]\nauth_prot = 1\n", "unknown setting radius.auth_prot"),
    ("[radios]\nx = 1\n", "unknown section [radios]"),
    ("[database]\nurl = \"mysql://x\"\n", "database.url must be"),
    ("[cabinet]\nsecure_cookies = \"maybe\"\n", "cabinet.secure_cookies must be true or false"),
    ("= broken", "not valid TOML"),
])
def test_bad_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(path, environ={})
