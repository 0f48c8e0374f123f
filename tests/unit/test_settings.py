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


def test_collector_exporters_and_forced_sampling_from_file_and_env(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[collector]\nexporters = ["192.0.2.1", "198.51.100.0/24"]\n'
                    'sampling = { "198.51.100.7" = 100 }\nmax_flow_seconds = 3600\n')
    settings = load_settings(path, environ={})
    assert settings.get("collector", "exporters") == ["192.0.2.1", "198.51.100.0/24"]
    assert settings.get("collector", "sampling") == {"198.51.100.7": 100}
    assert settings.get("collector", "max_flow_seconds") == 3600
    env = load_settings(environ={"ABONENT_COLLECTOR_EXPORTERS": "10.0.0.0/8, 2001:db8::/32",
                                 "ABONENT_COLLECTOR_SAMPLING": "10.1.1.1=64"})
    assert env.get("collector", "exporters") == ["10.0.0.0/8", "2001:db8::/32"]
    assert env.get("collector", "sampling") == {"10.1.1.1": 64}
    assert load_settings(environ={}).get("collector", "exporters") == []


@pytest.mark.parametrize("environ, words", [
    ({"ABONENT_COLLECTOR_EXPORTERS": "192.0.2.300"}, "collector.exporters"),
    ({"ABONENT_COLLECTOR_SAMPLING": "192.0.2.1"}, "key=value"),
    ({"ABONENT_COLLECTOR_SAMPLING": "192.0.2.1=often"}, "must be an integer"),
    ({"ABONENT_COLLECTOR_SAMPLING": "192.0.2.1=0"}, "1 or more"),
    ({"ABONENT_COLLECTOR_EXPORTERS": "192.0.2.0/24",
      "ABONENT_COLLECTOR_SAMPLING": "10.0.0.1=10"}, "does not allow"),
    ({"ABONENT_COLLECTOR_MAX_FLOW_SECONDS": "0"}, "max_flow_seconds"),
])
def test_bad_collector_exporter_settings_are_refused_with_the_key_named(environ, words):
    with pytest.raises(SettingsError, match=words):
        load_settings(environ=environ)


def test_collector_exporters_in_a_file_must_be_strings(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[collector]\nexporters = [1, 2]\n")
    with pytest.raises(SettingsError, match="collector.exporters"):
        load_settings(path, environ={})


@pytest.mark.parametrize("name,value,message", [
    ("ABONENT_POLICY_SUSPEND_MODE", "maybe", "policy.suspend_mode must be block or redirect"),
    ("ABONENT_POLICY_REDIRECT_RATE_KBPS", "-1", "policy.redirect_rate_kbps must be 0 or more"),
    ("ABONENT_COA_TIMEOUT", "0", "coa.timeout must be more than 0 seconds"),
    ("ABONENT_COA_BACKOFF_MAX", "nan", "coa.backoff_max must be more than 0 seconds"),
    ("ABONENT_COA_BACKOFF_MAX", "1", "coa.backoff_max must not be less than"),
    ("ABONENT_COA_LANE_SIZE", "0", "coa.lane_size must be 1 or more"),
    ("ABONENT_COA_METRICS_PORT", "70000", "coa.metrics_port must be a port 0..65535"),
])
def test_the_enforcers_settings_are_refused_at_load_in_one_sentence(name, value, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(environ={name: value})


def test_branding_is_loaded_from_the_file(tmp_path):
    path = tmp_path / "brand.toml"
    path.write_text('[branding]\nname = "Sibirnet"\nlogo = "logo.svg"\naccent_color = "#0b5394"\n'
                    'header_color = "#f1c232"\ncontact = "Support: 8 800 000-00-00, 24/7"\n')
    section = load_settings(path, environ={}).section("branding")
    assert (section["name"], section["logo"], section["accent_color"]) == \
        ("Sibirnet", "logo.svg", "#0b5394")


@pytest.mark.parametrize("key, value, message", [
    ("logo", "https://cdn.example.com/logo.png", "must be a local file"),
    ("logo", "//cdn.example.com/logo.png", "must be a local file"),
    ("logo", "logo.gif", "must be a .jpeg, .jpg, .png, .svg, .webp file"),
    ("accent_color", "blue", "must be a colour like #0a66c2"),
    ("accent_color", "#ffcc00", "too pale"),
    ("header_color", "#12345", "must be a colour like"),
    ("contact", "x" * 201, "one line of at most 200"),
    ("name", "two\nlines", "one line of at most 60"),
    ("colour", "#000000", "unknown setting branding.colour"),
])
def test_bad_branding_is_refused_with_the_key_named(tmp_path, key, value, message):
    import json
    path = tmp_path / "brand.toml"
    path.write_text(f"[branding]\n{key} = {json.dumps(value)}\n")
    with pytest.raises(SettingsError, match=message):
        load_settings(path, environ={})


def test_contrast_follows_wcag():
    from config.settings import contrast
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#0a66c2", "#ffffff"), 1) == 5.7
    assert contrast("#ffffff", "#ffffff") == 1.0
