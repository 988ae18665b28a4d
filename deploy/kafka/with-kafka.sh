#!/usr/bin/env bash
# Run a command with a fresh local broker: starts Kafka in a temporary state
# directory, exports the variables below, runs "$@", always stops the broker,
# and exits with the command's status.
#
#   LEADSTREAMS_BOOTSTRAP        PLAINTEXT listener, host:port (unchanged, no security)
#   LEADSTREAMS_KAFKA_STATE      the state directory (for restart.sh in fault-injection runs)
# The broker is started with start.sh --secured (KAFKA_SECURED=0 turns that off), so the
# same broker JVM also serves the listeners of STATE/secured.env, all exported:
#   LEADSTREAMS_SECURED_BOOTSTRAP                 SASL_SSL, SCRAM-SHA-256/512, client certificate
#                                                 required (mutual TLS)
#   LEADSTREAMS_SECURED_NOCERT_BOOTSTRAP          SASL_SSL, SCRAM-SHA-256/512, no client certificate
#   LEADSTREAMS_SECURED_SSL_BOOTSTRAP             SSL, client certificate required, no SASL
#   LEADSTREAMS_SECURED_SASL_PLAINTEXT_BOOTSTRAP  SASL_PLAINTEXT, PLAIN + SCRAM-SHA-256/512
#   LEADSTREAMS_SECURED_USER / _PASSWORD          the SASL user (SCRAM-SHA-256, SCRAM-SHA-512 and
#                                                 PLAIN; password random per start)
#   LEADSTREAMS_SECURED_CA                        PEM CA certificate the broker's certificate is
#                                                 signed by (SAN IP:127.0.0.1, DNS:localhost)
#   LEADSTREAMS_SECURED_CLIENT_CERT / _CLIENT_KEY PEM file with the client certificate and its
#                                                 unencrypted key (both name the same file)
#   LEADSTREAMS_SECURED_CLIENT_ENCRYPTED_KEY      the same certificate + key encrypted (PKCS#8,
#                                                 PBE-SHA1-3DES, readable by Java and OpenSSL) ...
#   LEADSTREAMS_SECURED_CLIENT_KEY_PASSWORD       ... with this password
#   LEADSTREAMS_SECURED_UNTRUSTED_CA              a CA the broker does not use or trust, and
#   LEADSTREAMS_SECURED_UNTRUSTED_CLIENT_CERT     a client certificate + key signed by it
#   LEADSTREAMS_SECURED_CONFIG_DIR                directory of the Kafka client properties files
#                                                 (`--kafka-config` format, also valid for Java):
#     client-sasl-ssl.properties                  SASL_SSL + SCRAM-SHA-512 + mutual TLS
#     client-sasl-ssl-256.properties              SASL_SSL + SCRAM-SHA-256 + mutual TLS
#     client-sasl-ssl-encrypted-key.properties    as client-sasl-ssl, key encrypted (ssl.key.password)
#     client-sasl-ssl-nocert.properties           SASL_SSL + SCRAM-SHA-512, no client certificate
#     client-ssl.properties                       SSL + mutual TLS, no SASL
#     client-sasl-plaintext.properties            SASL_PLAINTEXT + PLAIN
#     client-sasl-plaintext-scram.properties      SASL_PLAINTEXT + SCRAM-SHA-512
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="$(mktemp -d "${TMPDIR:-/tmp}/leadstreams-kafka.XXXXXX")"
cleanup() { "$here/stop.sh" "$state" || true; rm -rf "$state"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
secured=()
[[ ${KAFKA_SECURED:-1} == 0 ]] || secured=(--secured)
LEADSTREAMS_BOOTSTRAP="$("$here/start.sh" "${secured[@]}" "$state")"
LEADSTREAMS_KAFKA_STATE="$state"  # for restart.sh in fault-injection runs
export LEADSTREAMS_BOOTSTRAP LEADSTREAMS_KAFKA_STATE
if [[ -f "$state/secured.env" ]]; then set -a; source "$state/secured.env"; set +a; fi
set +e
"$@"
status=$?
set -e
exit $status
