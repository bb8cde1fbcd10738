"""load_settings: defaults < TOML file < ROUTING_* environment < explicit overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from routing_app.codec import registry_client
from routing_app.config import ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No routing-app.toml from the checkout, no ROUTING_* from the developer's shell.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROUTING_CONFIG", raising=False)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s == Settings()
    assert s.kafka_port == 19092 and s.registry_port == 18081
    assert s.routes_topic == "routing.routes" and s.usage_partitions == 6
    assert s.bootstrap_servers is None and not s.uses_external_cluster
    assert s.bootstrap == "127.0.0.1:19092"
    assert s.registry_url == "http://127.0.0.1:18081/apis/ccompat/v7"
    assert s.usage_interval_s == 1.0


def test_derived_urls_follow_ports_and_external_cluster() -> None:
    s = load_settings(environ={}, kafka_port=29092, registry_port=28081)
    assert s.bootstrap == "127.0.0.1:29092"
    assert s.registry_url == "http://127.0.0.1:28081/apis/ccompat/v7"
    ext = load_settings(environ={}, bootstrap_servers="k:9092", schema_registry_url="http://r")
    assert ext.uses_external_cluster and ext.bootstrap == "k:9092" and ext.registry_url == "http://r"


def test_toml_routing_section(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
[routing]
kafka_port = 29092
routes-topic = "my.routes"
usage_interval_s = 2.5
state_dir = "~/stack"
bootstrap_servers = "broker:9092"
""",
    )
    s = load_settings(path, environ={})
    assert s.kafka_port == 29092
    assert s.routes_topic == "my.routes"
    assert s.usage_interval_s == 2.5
    assert s.state_dir == Path("~/stack").expanduser()
    assert s.bootstrap_servers == "broker:9092"
    assert s.registry_port == 18081  # untouched default


def test_toml_top_level(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'web_port = 7070\nevents_topic = "ev"\n')
    s = load_settings(path, environ={})
    assert (s.web_port, s.events_topic) == (7070, "ev")


def test_default_file_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "routing-app.toml").write_text("[routing]\nweb_port = 7171\n")
    assert load_settings(environ={}).web_port == 7171


def test_config_file_from_routing_config_in_given_environ(tmp_path: Path) -> None:
    path = _toml(tmp_path, "web_port = 7272\n")
    assert load_settings(environ={"ROUTING_CONFIG": str(path)}).web_port == 7272


def test_config_file_from_routing_config_in_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _toml(tmp_path, "web_port = 7373\n")
    monkeypatch.setenv("ROUTING_CONFIG", str(path))
    assert load_settings().web_port == 7373
    # An explicit environ replaces os.environ entirely, ROUTING_CONFIG included.
    assert load_settings(environ={}).web_port == 6066


def test_env_overrides_file_and_overrides_win(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[routing]\nkafka_port = 29092\nroutes_topic = "file.routes"\nweb_port = 7000\n')
    env = {
        "ROUTING_KAFKA_PORT": "39092",
        "ROUTING_ROUTES_TOPIC": "env.routes",
        "ROUTING_USAGE_INTERVAL_S": "0.25",
        "ROUTING_UNRELATED": "x",
    }
    s = load_settings(path, environ=env)
    assert s.kafka_port == 39092 and s.routes_topic == "env.routes"
    assert s.usage_interval_s == 0.25
    assert s.web_port == 7000  # file value not overridden by env
    s2 = load_settings(path, environ=env, kafka_port=49092, routes_topic=None)
    assert s2.kafka_port == 49092
    assert s2.routes_topic == "env.routes"  # None override means "not given"


def test_empty_env_value_is_ignored() -> None:
    assert load_settings(environ={"ROUTING_KAFKA_PORT": ""}).kafka_port == 19092


def test_env_empty_optional_string_stays_none_when_unset() -> None:
    s = load_settings(environ={"ROUTING_SCHEMA_REGISTRY_URL": "http://reg:8081"})
    assert s.schema_registry_url == "http://reg:8081" and s.bootstrap_servers is None


def test_os_environ_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTING_REGISTRY_PORT", "28181")
    assert load_settings().registry_port == 28181


def test_replace() -> None:
    s = load_settings(environ={})
    assert s.replace(web_port=1).web_port == 1 and s.web_port == 6066


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"ROUTING_KAFKA_PORT": "abc"}, "kafka_port"),
        ({"ROUTING_KAFKA_PORT": "70000"}, "kafka_port"),
        ({"ROUTING_WEB_PORT": "0"}, "web_port"),
        ({"ROUTING_REGISTRY_PORT": "-5"}, "registry_port"),
        ({"ROUTING_USAGE_INTERVAL_S": "soon"}, "usage_interval_s"),
        ({"ROUTING_USAGE_INTERVAL_S": "0"}, "usage_interval_s"),
        ({"ROUTING_USAGE_PARTITIONS": "0"}, "usage_partitions"),
        ({"ROUTING_ROUTES_TOPIC": "a/b"}, "routes_topic"),
        ({"ROUTING_CONTROL_TOPIC": "x/y"}, "control_topic"),
        ({"ROUTING_ANSWERS_TOPIC": "a/b"}, "answers_topic"),
        ({"ROUTING_SECURITY_PROTOCOL": "SASL"}, "security_protocol"),
        ({"ROUTING_SECURITY_PROTOCOL": "SASL_SSL"}, "sasl_username"),
        ({"ROUTING_SASL_USERNAME": "alice", "ROUTING_SASL_PASSWORD": "pw"}, "security_protocol"),
        (
            {
                "ROUTING_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "ROUTING_SASL_MECHANISM": "GSSAPI",
                "ROUTING_SASL_USERNAME": "a",
                "ROUTING_SASL_PASSWORD": "b",
            },
            "sasl_mechanism",
        ),
        ({"ROUTING_REGISTRY_BASIC_AUTH": "no-colon"}, "registry_basic_auth"),
        ({"ROUTING_OPERATOR_PRINCIPALS": "User:alice,bob"}, "operator_principals"),
    ],
)
def test_bad_env_values_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError, match=f"'{setting}'"):
        load_settings(environ=env)


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ('kafka_port = "not-a-port"', "kafka_port"),
        ("kafka_port = 70000", "kafka_port"),
        ("kafka_port = true", "kafka_port"),
        ('usage_topic = "a/b"', "usage_topic"),
        ("[routing]\nweb_port = [1, 2]", "web_port"),
    ],
)
def test_bad_file_values_name_the_setting(tmp_path: Path, text: str, setting: str) -> None:
    with pytest.raises(ConfigError, match=f"'{setting}'"):
        load_settings(_toml(tmp_path, text), environ={})


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[routing]\nkafka_prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'kafka_prot'"):
        load_settings(path, environ={})


def test_invalid_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, "kafka_port = = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(path, environ={})


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(f"config file {missing} does not exist")):
        load_settings(missing, environ={})


def test_bad_override_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="'kafka_port'"):
        load_settings(environ={}, kafka_port="many")
    with pytest.raises(ConfigError, match="unknown setting 'kafka_prot'"):
        load_settings(environ={}, kafka_prot=1)


def test_security_settings_reach_every_client_and_hide_secrets() -> None:
    s = load_settings(
        environ={
            "ROUTING_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "ROUTING_SASL_MECHANISM": "SCRAM-SHA-512",
            "ROUTING_SASL_USERNAME": "routing-producer",
            "ROUTING_SASL_PASSWORD": "s3cret",
            "ROUTING_REGISTRY_BASIC_AUTH": "reg:pw",
            "ROUTING_OPERATOR_PRINCIPALS": "User:ops, User:alice",
        }
    )
    security = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "routing-producer",
        "sasl.password": "s3cret",
    }
    assert s.kafka.client_config(acks="all") == {"bootstrap.servers": s.bootstrap, **security, "acks": "all"}
    assert (
        s.producer_config().items()
        >= {
            **security,
            "schema.registry.basic.auth.user.info": "reg:pw",
            "routing.answers.topic": "routing.answers",
        }.items()
    )
    assert s.registry_config()["basic.auth.user.info"] == "reg:pw"
    registry_client(s.registry_config())  # confluent-kafka refuses settings it does not know
    assert s.principal == "User:routing-producer"
    assert s.operators() == {"User:ops", "User:alice"}
    assert "s3cret" not in repr(s) and "reg:pw" not in repr(s) and "s3cret" not in str(s.kafka)
