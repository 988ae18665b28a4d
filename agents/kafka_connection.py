"""How to reach Kafka: one settings object for the worker, publish, tail and every tool.

Sources, strongest first: command-line options, ``LEADSTREAMS_KAFKA_*`` environment
variables (``LEADSTREAMS_BOOTSTRAP`` for the servers), then a Kafka client properties
file (``--kafka-config``), in the keys users already have — Java client keys
(``security.protocol``, ``sasl.jaas.config``, ``ssl.truststore.location`` with
``ssl.truststore.type=PEM``, …) or librdkafka keys (``sasl.username``,
``ssl.ca.location``, …). The password is a secret: it is kept out of ``repr``, logs
and ``--help``. With no bootstrap from any of them, the commands look for the address
``make kafka-up`` wrote (``.kafka/bootstrap``) before the default 127.0.0.1:9092.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from jproperties import Properties

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ENV_PREFIX = "LEADSTREAMS_KAFKA_"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
LOCAL_BROKER_FILE = Path(".kafka") / "bootstrap"  # written by deploy/kafka/start.sh (make kafka-up)


class KafkaConfigError(ValueError):
    """A connection setting that cannot work; the message says which and why."""


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap: str = DEFAULT_BOOTSTRAP
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True
    # Where the bootstrap address came from, for the message when nothing answers there.
    bootstrap_source: str = field(default="the default", compare=False)

    # -- building ------------------------------------------------------------------

    @classmethod
    def of(cls, value: KafkaConnection | str) -> KafkaConnection:
        """A connection from itself, or from a bare bootstrap address (PLAINTEXT)."""
        return value if isinstance(value, KafkaConnection) else cls(bootstrap=value)

    @classmethod
    def resolve(
        cls,
        options: Mapping[str, Any],
        config_file: str | None = None,
        environ: Mapping[str, str] | None = None,
        local_from: Path | None = None,
    ) -> KafkaConnection:
        """Options given (not None) win over ``LEADSTREAMS_KAFKA_*``, which win over the
        properties file, which wins over the defaults. With ``local_from`` (a directory)
        and no bootstrap and no properties file at all, a PLAINTEXT connection takes the
        address of the local broker found from there (:func:`local_broker`). Checked
        before it is returned."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_file = config_file or environ.get(f"{ENV_PREFIX}CONFIG")
        if config_file:
            values.update(from_properties(config_file))
            if "bootstrap" in values:
                values["bootstrap_source"] = f"--kafka-config {config_file}"
        values.update(from_environment(environ))
        named = [var for var, name in ENVIRONMENT.items() if name == "bootstrap" and environ.get(var)]
        if named:
            values["bootstrap_source"] = named[-1]  # (the last one set wins in from_environment)
        given = {key: value for key, value in options.items() if value is not None}
        values.update(given)
        if "bootstrap" in given:
            values["bootstrap_source"] = "--bootstrap"
        plaintext = str(values.get("security_protocol", "PLAINTEXT")).upper() == "PLAINTEXT"
        if local_from is not None and "bootstrap" not in values and not config_file and plaintext:
            found = local_broker(local_from)
            if found is not None:
                values["bootstrap"], path = found
                values["bootstrap_source"] = f"{path}, written by `make kafka-up`"
        known = {f.name for f in fields(cls)}
        connection = cls(**{key: value for key, value in values.items() if key in known})
        return connection.checked()

    def checked(self) -> KafkaConnection:
        protocol = self.security_protocol.upper()
        if protocol not in PROTOCOLS:
            raise KafkaConfigError(
                f"security protocol {self.security_protocol!r}: use one of {', '.join(PROTOCOLS)}"
            )
        mechanism = self.sasl_mechanism.upper() if self.sasl_mechanism else None
        if protocol.startswith("SASL_"):
            mechanism = mechanism or "PLAIN"
            if mechanism not in MECHANISMS:
                raise KafkaConfigError(
                    f"SASL mechanism {self.sasl_mechanism!r}: use one of {', '.join(MECHANISMS)}"
                )
            if not self.sasl_username or self.sasl_password is None:
                where = f"--sasl-username, {ENV_PREFIX}SASL_PASSWORD or --kafka-config"
                raise KafkaConfigError(f"{protocol} needs a SASL username and password ({where})")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if protocol in ("SSL", "SASL_SSL") else ():
            path = getattr(self, name)  # (without TLS they are not used: a PLAINTEXT pod may set them)
            if path and not Path(path).is_file():
                raise KafkaConfigError(f"{name.replace('_', '-')} {path}: no such file")
        if bool(self.ssl_keyfile) and not self.ssl_certfile:
            raise KafkaConfigError("ssl-keyfile given without ssl-certfile")
        return replace(self, security_protocol=protocol, sasl_mechanism=mechanism)

    # -- using -----------------------------------------------------------------------

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Certificates verified against the CA file (the system's CAs without one), the
        host name checked unless turned off; a client certificate for mutual TLS."""
        if not self.uses_tls:
            return None
        from aiokafka.helpers import create_ssl_context  # the CLI imports this module: keep aiokafka lazy

        context = create_ssl_context(
            cafile=self.ssl_cafile,
            certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile,
            password=self.ssl_key_password,
        )
        if not self.ssl_cafile:
            context.load_default_certs()
        context.check_hostname = self.ssl_check_hostname
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.security_protocol.startswith("SASL_"):
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)  # fmt: skip
        return options

    def describe(self) -> str:
        """For messages: where and how, never the password."""
        how = self.security_protocol
        if self.sasl_mechanism and how.startswith("SASL_"):
            how += f" {self.sasl_mechanism} as {self.sasl_username}"
        return f"{self.bootstrap} ({how})"


# -- sources -----------------------------------------------------------------------------

ENVIRONMENT = {
    "LEADSTREAMS_BOOTSTRAP": "bootstrap",
    f"{ENV_PREFIX}BOOTSTRAP": "bootstrap",
    f"{ENV_PREFIX}SECURITY_PROTOCOL": "security_protocol",
    f"{ENV_PREFIX}SASL_MECHANISM": "sasl_mechanism",
    f"{ENV_PREFIX}SASL_USERNAME": "sasl_username",
    f"{ENV_PREFIX}SASL_PASSWORD": "sasl_password",
    f"{ENV_PREFIX}SSL_CAFILE": "ssl_cafile",
    f"{ENV_PREFIX}SSL_CERTFILE": "ssl_certfile",
    f"{ENV_PREFIX}SSL_KEYFILE": "ssl_keyfile",
    f"{ENV_PREFIX}SSL_KEY_PASSWORD": "ssl_key_password",
    f"{ENV_PREFIX}SSL_CHECK_HOSTNAME": "ssl_check_hostname",
}


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for variable, name in ENVIRONMENT.items():
        if environ.get(variable):
            values[name] = environ[variable]
    if "ssl_check_hostname" in values:
        values["ssl_check_hostname"] = values["ssl_check_hostname"].lower() not in ("0", "false", "no")
    return values


JAAS_VALUE = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


def from_properties(path: str) -> dict[str, Any]:
    """The settings of a Kafka client properties file (Java or librdkafka keys)."""
    properties = Properties()
    try:
        with open(path, "rb") as file:
            properties.load(file, "utf-8")
    except OSError as exc:
        raise KafkaConfigError(f"--kafka-config {path}: {exc.strerror or exc}") from None
    raw = {key: str(value.data).strip() for key, value in properties.items()}
    values: dict[str, Any] = {}

    def take(name: str, *keys: str) -> None:
        for key in keys:
            if raw.get(key):
                values[name] = raw[key]
                return

    take("bootstrap", "bootstrap.servers", "metadata.broker.list")
    take("security_protocol", "security.protocol")
    take("sasl_mechanism", "sasl.mechanism", "sasl.mechanisms")
    take("sasl_username", "sasl.username")
    take("sasl_password", "sasl.password")
    take("ssl_cafile", "ssl.ca.location")
    take("ssl_certfile", "ssl.certificate.location")
    take("ssl_keyfile", "ssl.key.location")
    take("ssl_key_password", "ssl.key.password")
    jaas = {
        key: re.sub(r"\\(.)", r"\1", value)
        for key, value in JAAS_VALUE.findall(raw.get("sasl.jaas.config", ""))
    }
    if "username" in jaas:
        values.setdefault("sasl_username", jaas["username"])
        values.setdefault("sasl_password", jaas.get("password"))
    for store, name in (("truststore", "ssl_cafile"), ("keystore", "ssl_certfile")):
        location = raw.get(f"ssl.{store}.location")
        if not location:
            continue
        kind = raw.get(f"ssl.{store}.type", "JKS").upper()
        if kind != "PEM":
            raise KafkaConfigError(
                f"--kafka-config {path}: ssl.{store}.type {kind} cannot be read here; give PEM files "
                f"(ssl.{store}.type=PEM, or ssl.ca.location / ssl.certificate.location / ssl.key.location); "
                f"keytool -exportcert -rfc writes a certificate as PEM"
            )
        values.setdefault(name, location)
        if store == "keystore":  # a PEM keystore holds the key and the certificate chain
            values.setdefault("ssl_keyfile", location)
            if raw.get("ssl.keystore.password") and "ssl_key_password" not in values:
                values["ssl_key_password"] = raw["ssl.keystore.password"]
    algorithm = raw.get("ssl.endpoint.identification.algorithm")
    if algorithm is not None and algorithm.lower() in ("", "none"):
        values["ssl_check_hostname"] = False
    return values


def local_broker(start: Path) -> tuple[str, Path] | None:
    """The address in ``.kafka/bootstrap`` of ``start`` or, inside a git checkout, of a
    parent up to the repository's root: (address, file). ``make kafka-up`` writes it
    while its broker runs (``make kafka-down`` removes it), so a newcomer never copies
    a port. Outside a repository only ``start`` itself is looked at."""
    chain = [start.resolve(), *start.resolve().parents]
    root = next((i for i, directory in enumerate(chain) if (directory / ".git").exists()), None)
    candidates = chain[: root + 1] if root is not None else chain[:1]
    for directory in candidates:
        path = directory / LOCAL_BROKER_FILE
        try:
            address = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if address:
            return address, path
    return None
