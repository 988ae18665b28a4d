"""The Kafka connection options of `worker`, `publish` and `tail`: resolved into one
connection, a first contact with the broker before the command runs, and one line
(exit 3) for what Kafka refuses."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from agents.cli_errors import EXIT_INTERRUPTED, EXIT_USAGE, fail, say
from agents.kafka_connection import MECHANISMS, PROTOCOLS, KafkaConfigError, KafkaConnection

KAFKA_OPTIONS = (
    click.option("--bootstrap", help="Kafka bootstrap servers, host:port[,host:port] "
                 "(env LEADSTREAMS_BOOTSTRAP; else the address `make kafka-up` wrote to .kafka/bootstrap "
                 "here or above, up to the repository's root; else 127.0.0.1:9092)."),
    click.option("--kafka-config", type=click.Path(dir_okay=False), help="A Kafka client properties file "
                 "(Java or librdkafka keys: bootstrap.servers, security.protocol, sasl.mechanism, "
                 "sasl.jaas.config, ssl.truststore.location with type PEM, ...) "
                 "(env LEADSTREAMS_KAFKA_CONFIG)."),
    click.option("--security-protocol", type=click.Choice(PROTOCOLS, case_sensitive=False),
                 help="Default PLAINTEXT (env LEADSTREAMS_KAFKA_SECURITY_PROTOCOL)."),
    click.option("--sasl-mechanism", type=click.Choice(MECHANISMS, case_sensitive=False),
                 help="Default PLAIN with SASL_* (env LEADSTREAMS_KAFKA_SASL_MECHANISM)."),
    click.option("--sasl-username", help="(env LEADSTREAMS_KAFKA_SASL_USERNAME). The password is read from "
                 "LEADSTREAMS_KAFKA_SASL_PASSWORD or --kafka-config, never from the command line."),
    click.option("--ssl-cafile", help="PEM CA certificates to trust (default: the system's; "
                 "env LEADSTREAMS_KAFKA_SSL_CAFILE)."),
    click.option("--ssl-certfile", help="PEM client certificate, for mutual TLS "
                 "(env LEADSTREAMS_KAFKA_SSL_CERTFILE)."),
    click.option("--ssl-keyfile", help="PEM client key (env LEADSTREAMS_KAFKA_SSL_KEYFILE; its password in "
                 "LEADSTREAMS_KAFKA_SSL_KEY_PASSWORD)."),
    click.option("--ssl-check-hostname/--no-ssl-check-hostname", default=None,
                 help="Check the broker's certificate names its host (default on)."),
)  # fmt: skip


Prepare = Callable[[dict[str, Any]], Mapping[str, Any]]


def kafka_options(
    broker_wait: float, prepare: Prepare | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The Kafka connection options on a command, resolved into one ``kafka`` argument
    (options, then LEADSTREAMS_KAFKA_* variables, then --kafka-config, then the local
    broker's .kafka/bootstrap), and a first contact with the broker before the command
    runs: one line and exit 3 when it cannot work. ``prepare(arguments)`` runs first —
    the checks that need no broker, so a mistake there is found at once — and returns
    more keyword arguments for the command."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_connection(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in KAFKA_OPTION_NAMES}
            config_file, wait = given.pop("kafka_config"), given.pop("broker_wait")
            if prepare is not None:
                kwargs.update(prepare(kwargs))
            try:
                kwargs["kafka"] = kafka = KafkaConnection.resolve(given, config_file, local_from=Path.cwd())
            except KafkaConfigError as exc:
                fail(str(exc), EXIT_USAGE)
            reach_or_exit(kafka, wait)
            return command(*args, **kwargs)

        wait_option = click.option(
            "--broker-wait",
            type=click.FloatRange(min=0),
            default=broker_wait,
            show_default=True,
            help="Seconds to wait for a broker that refuses connections (not for bad credentials or TLS).",
        )
        for option in (*reversed(KAFKA_OPTIONS), wait_option):
            with_connection = option(with_connection)
        return with_connection

    return decorate


T = TypeVar("T")


def kafka_call(call: Coroutine[Any, Any, T], hint: str) -> T:
    """Run one Kafka request; a refusal (ACLs, policies, bad topic names) is one line, exit 3."""
    from aiokafka.errors import KafkaError

    from agents.kafka_errors import EXIT_KAFKA

    try:
        return asyncio.run(call)
    except KafkaError as exc:
        fail(f"Kafka refused {hint}: {exc}", EXIT_KAFKA)


def reach_or_exit(kafka: KafkaConnection, wait: float) -> None:
    """Contact the broker (waiting up to ``wait`` seconds for one that refuses, with a
    progress line every 10 s); one line and exit 3 when it cannot be used, exit 130
    at once on Ctrl-C."""
    from agents.kafka_errors import EXIT_KAFKA, KafkaUnavailable, preflight

    said = -10.0

    def waiting(line: str, waited: float) -> None:
        nonlocal said
        if waited - said >= 10:  # a progress line every 10 s, not every try
            said = waited
            say.plain(f"waiting for Kafka ({waited:.0f} of {wait:.0f}s): {line}")

    try:
        asyncio.run(preflight(kafka, wait, waiting))
    except KafkaUnavailable as exc:
        fail(str(exc), EXIT_KAFKA)
    except KeyboardInterrupt:  # asyncio.run cancelled the attempt (its client closed) first
        fail(f"interrupted while waiting for Kafka at {kafka.bootstrap}", EXIT_INTERRUPTED)


KAFKA_OPTION_NAMES = ("bootstrap", "kafka_config", "security_protocol", "sasl_mechanism", "sasl_username",
                      "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname",
                      "broker_wait")  # fmt: skip
