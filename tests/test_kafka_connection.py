"""Kafka connection settings: options over LEADSTREAMS_KAFKA_* over a properties file;
Java and librdkafka keys; the password never shown."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from agents.kafka_connection import KafkaConfigError, KafkaConnection, from_properties, local_broker

PASSWORD = 'pa"ss=w;rd\\x'


def escaped(text: str) -> str:
    """As a value in a properties file (a backslash escapes)."""
    return text.replace("\\", "\\\\")


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, str]:
    """A throwaway CA and a client certificate/key signed by it."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca")
    run(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=c",
    )
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "2")  # fmt: skip
    (tmp_path / "keystore.pem").write_text(
        (tmp_path / "client.key").read_text() + (tmp_path / "client.pem").read_text()
    )
    return {name: str(tmp_path / name) for name in ("ca.pem", "client.pem", "client.key", "keystore.pem")}


def test_a_java_client_properties_file(tmp_path: Path, pem_files: dict[str, str]) -> None:
    jaas_password = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
    config = tmp_path / "client.properties"
    config.write_text(
        "# from kafka-console-producer --command-config\n"
        "bootstrap.servers=b1:9093,b2:9093\n"
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n"
        f'    username="alice" password="{jaas_password.replace(chr(92), chr(92) * 2)}";\n'
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={pem_files['ca.pem']}\n"
        "ssl.keystore.type=PEM\n"
        f"ssl.keystore.location={pem_files['keystore.pem']}\n"
        "ssl.endpoint.identification.algorithm=\n"
    )
    kafka = KafkaConnection.resolve({}, str(config), environ={})
    assert kafka.bootstrap == "b1:9093,b2:9093"
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "alice",
    )
    assert kafka.sasl_password == PASSWORD
    assert kafka.ssl_cafile == kafka.ssl_cafile == pem_files["ca.pem"]
    assert kafka.ssl_certfile == kafka.ssl_keyfile == pem_files["keystore.pem"]
    assert kafka.ssl_check_hostname is False
    context = kafka.ssl_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_REQUIRED
    assert not context.check_hostname


def test_librdkafka_keys(tmp_path: Path, pem_files: dict[str, str]) -> None:
    config = tmp_path / "librdkafka.properties"
    config.write_text(
        "bootstrap.servers=pkc-1.confluent.cloud:9092\nsecurity.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\n"
        f"sasl.username=KEY\nsasl.password={escaped(PASSWORD)}\nssl.ca.location={pem_files['ca.pem']}\n"
        f"ssl.certificate.location={pem_files['client.pem']}\nssl.key.location={pem_files['client.key']}\n"
    )
    kafka = KafkaConnection.resolve({}, str(config), environ={})
    assert (kafka.sasl_mechanism, kafka.sasl_username, kafka.sasl_password) == ("PLAIN", "KEY", PASSWORD)
    assert (kafka.ssl_certfile, kafka.ssl_keyfile) == (pem_files["client.pem"], pem_files["client.key"])
    assert kafka.ssl_check_hostname is True
    options = kafka.client_options()
    assert options["sasl_plain_password"] == PASSWORD and isinstance(options["ssl_context"], ssl.SSLContext)


def test_options_win_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.properties"
    config.write_text("bootstrap.servers=from-file:1\nsecurity.protocol=SASL_PLAINTEXT\nsasl.username=file-user\n"
                      "sasl.password=file-pass\n")  # fmt: skip
    environ = {
        "LEADSTREAMS_KAFKA_CONFIG": str(config),
        "LEADSTREAMS_BOOTSTRAP": "from-env:2",
        "LEADSTREAMS_KAFKA_SASL_USERNAME": "env-user",
        "LEADSTREAMS_KAFKA_SASL_MECHANISM": "scram-sha-256",
    }
    kafka = KafkaConnection.resolve({"sasl_username": "option-user", "bootstrap": None}, environ=environ)
    assert kafka.bootstrap == "from-env:2"
    assert kafka.sasl_username == "option-user"
    assert kafka.sasl_mechanism == "SCRAM-SHA-256"
    assert kafka.sasl_password == "file-pass"
    assert kafka.security_protocol == "SASL_PLAINTEXT"


def test_the_password_is_never_shown() -> None:
    kafka = KafkaConnection.resolve(
        {"security_protocol": "sasl_plaintext", "sasl_username": "u"},
        environ={"LEADSTREAMS_KAFKA_SASL_PASSWORD": PASSWORD},
    )
    assert PASSWORD not in repr(kafka) and PASSWORD not in kafka.describe()
    assert kafka.describe() == "127.0.0.1:9092 (SASL_PLAINTEXT PLAIN as u)"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "SASL_SSL needs a SASL username and password"),
        ({"security_protocol": "TLS"}, "security protocol 'TLS': use one of"),
        (
            {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_mechanism": "GSSAPI"},
            "mechanism 'GSSAPI'",
        ),
        (
            {"security_protocol": "SSL", "ssl_cafile": "/nowhere/ca.pem"},
            "ssl-cafile /nowhere/ca.pem: no such file",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_with_the_reason(options: dict[str, str], message: str) -> None:
    environ = {"LEADSTREAMS_KAFKA_SASL_PASSWORD": "p"} if "sasl_username" in options else {}
    with pytest.raises(KafkaConfigError, match=message):
        KafkaConnection.resolve(options, environ=environ)


def test_a_jks_truststore_is_refused_with_a_way_out(tmp_path: Path) -> None:
    config = tmp_path / "jks.properties"
    config.write_text("ssl.truststore.location=/etc/kafka/truststore.jks\nssl.truststore.password=changeit\n")
    with pytest.raises(
        KafkaConfigError, match=r"ssl.truststore.type JKS cannot be read here; give PEM files"
    ):
        from_properties(str(config))


def test_a_missing_properties_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KafkaConfigError, match=r"--kafka-config .*missing.properties: No such file"):
        KafkaConnection.resolve({}, str(tmp_path / "missing.properties"), environ={})


def test_plaintext_needs_nothing() -> None:
    assert KafkaConnection.of("h:1").client_options() == {
        "bootstrap_servers": "h:1",
        "security_protocol": "PLAINTEXT",
    }


def test_the_local_brokers_address_is_used_when_none_is_given(tmp_path: Path) -> None:
    """`make kafka-up` writes .kafka/bootstrap: found from the directory or, inside a
    repository, from below it; any address given wins; never for a secured protocol."""
    (tmp_path / ".git").mkdir()
    (tmp_path / ".kafka").mkdir()
    (tmp_path / ".kafka" / "bootstrap").write_text("127.0.0.1:40123\n")
    below = tmp_path / "examples" / "demo"
    below.mkdir(parents=True)
    found = KafkaConnection.resolve({}, environ={}, local_from=below)
    assert found.bootstrap == "127.0.0.1:40123"
    assert found.bootstrap_source == f"{tmp_path}/.kafka/bootstrap, written by `make kafka-up`"
    given = KafkaConnection.resolve({"bootstrap": "h:1"}, environ={}, local_from=below)
    assert (given.bootstrap, given.bootstrap_source) == ("h:1", "--bootstrap")
    from_env = KafkaConnection.resolve({}, environ={"LEADSTREAMS_BOOTSTRAP": "e:2"}, local_from=below)
    assert (from_env.bootstrap, from_env.bootstrap_source) == ("e:2", "LEADSTREAMS_BOOTSTRAP")
    secured = KafkaConnection.resolve(
        {"security_protocol": "SSL"}, environ={}, local_from=below
    )  # the file holds the PLAINTEXT listener
    assert (secured.bootstrap, secured.bootstrap_source) == ("127.0.0.1:9092", "the default")
    assert KafkaConnection.resolve({}, environ={}).bootstrap == "127.0.0.1:9092"  # only when asked


def test_outside_a_repository_only_the_directory_itself_is_looked_at(tmp_path: Path) -> None:
    (tmp_path / ".kafka").mkdir()
    (tmp_path / ".kafka" / "bootstrap").write_text("127.0.0.1:40123\n")
    (tmp_path / "sub").mkdir()
    assert local_broker(tmp_path) == ("127.0.0.1:40123", tmp_path / ".kafka" / "bootstrap")
    assert local_broker(tmp_path / "sub") is None
