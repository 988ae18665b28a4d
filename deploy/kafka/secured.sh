#!/usr/bin/env bash
# Secured mode of start.sh (KAFKA_SECURED=1 or start.sh --secured); not meant to be run alone.
#   secured.sh STATE_DIR PORT_SASL_SSL PORT_SASL_SSL_NOCERT PORT_SSL PORT_SASL_PLAINTEXT
# Writes into STATE_DIR (all throwaway, regenerated on every start, never in the repository):
#   tls/ca.pem                     CA that signed the broker and client certificates (truststore)
#   tls/broker.pem                 broker key (encrypted PKCS#8) + certificate, SAN IP:127.0.0.1, DNS:localhost
#   tls/client.pem                 client key (unencrypted PKCS#8) + certificate, CN=alice (mutual TLS)
#   tls/client-encrypted.pem       the same client key encrypted (password in secured.env) + certificate
#   tls/untrusted-ca.pem           a second CA the broker does not trust (negative tests) ...
#   tls/untrusted-client.pem       ... and a client key + certificate signed by it
#   secured.env                    KEY=value lines (see with-kafka.sh), passwords random per start
#   client-*.properties            Kafka client properties, one per listener/mechanism
#   server-secured.properties      appended to server.properties by start.sh
#   scram-args                     StorageTool format arguments creating the SCRAM users (NUL-separated)
# The broker trusts only tls/ca.pem. Keys are EC P-256 (fast to generate, accepted by Java and OpenSSL).
set -euo pipefail
state="$1"; p_sasl_ssl="$2"; p_nocert="$3"; p_ssl="$4"; p_sasl_plain="$5"
command -v openssl >/dev/null || { echo "error: openssl not found (needed by the secured mode)" >&2; exit 3; }
umask 077
tls="$state/tls"
rm -rf "$tls"; mkdir -p "$tls"
cd "$tls"

# Alphanumeric only: these go into JAAS strings, properties, shell lines and StorageTool's
# 'SCRAM-SHA-512=[name=...,password=...]' syntax unquoted.
rand() { openssl rand -hex 16; }
user=alice
password="$(rand)"
key_password="$(rand)"      # broker.pem and client-encrypted.pem

cat > openssl.cnf <<'CNF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
# CA: self-signed; a leaf: new key + certificate signed by CA in one `openssl req -x509 -CA` call.
ca() {  # ca NAME CN
  openssl req -x509 -new -config openssl.cnf -extensions ca "${ec[@]}" -noenc \
    -keyout "$1.key" -out "$1.pem" -days 7 -subj "/CN=$2" 2>/dev/null
}
leaf() {  # leaf NAME CA EXTENSIONS CN
  openssl req -x509 -new -config openssl.cnf -extensions "$3" "${ec[@]}" -noenc \
    -CA "$2.pem" -CAkey "$2.key" -keyout "$1.key" -out "$1.crt" -days 7 -subj "/CN=$4" 2>/dev/null
}
ca ca "leadstreams test CA"
ca untrusted-ca "leadstreams untrusted CA"
leaf broker ca server localhost
leaf client ca client "$user"
leaf untrusted-client untrusted-ca client "$user"
openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES -in broker.key -passout "pass:$key_password" -out broker.key.enc
openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES -in client.key -passout "pass:$key_password" -out client.key.enc
cat broker.key.enc broker.crt ca.pem > broker.pem
cat client.key client.crt > client.pem
cat client.key.enc client.crt > client-encrypted.pem
cat untrusted-client.key untrusted-client.crt > untrusted-client.pem
# Nothing can sign for the CAs once the start is over.
rm -f ca.key untrusted-ca.key ./*.key ./*.key.enc ./*.crt openssl.cnf

scram="org.apache.kafka.common.security.scram.ScramLoginModule required;"
plain="org.apache.kafka.common.security.plain.PlainLoginModule required user_$user=\"$password\";"
cat > "$state/server-secured.properties" <<PROPS
# Secured listeners (deploy/kafka/secured.sh). No authorizer: every authenticated
# principal may do everything, as on the PLAINTEXT listener.
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker.pem
ssl.key.password=$key_password
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.ssl.client.auth=required
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$scram
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$scram
listener.name.sasl_ssl_nocert.ssl.client.auth=none
listener.name.sasl_ssl_nocert.scram-sha-256.sasl.jaas.config=$scram
listener.name.sasl_ssl_nocert.scram-sha-512.sasl.jaas.config=$scram
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=$plain
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$scram
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$scram
PROPS
printf '%s\0' --add-scram "SCRAM-SHA-256=[name=$user,password=$password]" \
              --add-scram "SCRAM-SHA-512=[name=$user,password=$password]" > "$state/scram-args"

cat > "$state/secured.env" <<ENV
# Written by deploy/kafka/start.sh --secured (secured.sh); regenerated, with new
# passwords and certificates, on every start. with-kafka.sh exports all of these.
# SASL_SSL, SCRAM-SHA-256/512, client certificate required (mutual TLS):
LEADSTREAMS_SECURED_BOOTSTRAP=127.0.0.1:$p_sasl_ssl
# SASL_SSL, SCRAM-SHA-256/512, no client certificate:
LEADSTREAMS_SECURED_NOCERT_BOOTSTRAP=127.0.0.1:$p_nocert
# SSL, client certificate required, no SASL:
LEADSTREAMS_SECURED_SSL_BOOTSTRAP=127.0.0.1:$p_ssl
# SASL_PLAINTEXT, PLAIN and SCRAM-SHA-256/512:
LEADSTREAMS_SECURED_SASL_PLAINTEXT_BOOTSTRAP=127.0.0.1:$p_sasl_plain
LEADSTREAMS_SECURED_USER=$user
LEADSTREAMS_SECURED_PASSWORD=$password
LEADSTREAMS_SECURED_CA=$tls/ca.pem
LEADSTREAMS_SECURED_CLIENT_CERT=$tls/client.pem
LEADSTREAMS_SECURED_CLIENT_KEY=$tls/client.pem
LEADSTREAMS_SECURED_CLIENT_ENCRYPTED_KEY=$tls/client-encrypted.pem
LEADSTREAMS_SECURED_CLIENT_KEY_PASSWORD=$key_password
LEADSTREAMS_SECURED_UNTRUSTED_CA=$tls/untrusted-ca.pem
LEADSTREAMS_SECURED_UNTRUSTED_CLIENT_CERT=$tls/untrusted-client.pem
LEADSTREAMS_SECURED_CONFIG_DIR=$state
ENV

# Kafka client properties (the format of `leadstreams --kafka-config`); the Java client
# accepts them as they are (PEM stores, hostname verification on: the SAN has 127.0.0.1).
props() {  # props FILE PROTOCOL PORT MECHANISM(or -) CLIENT-PEM(or -) [KEY-PASSWORD]
  {
    echo "bootstrap.servers=127.0.0.1:$3"
    echo "security.protocol=$2"
    if [[ $4 != - ]]; then
      echo "sasl.mechanism=$4"
      if [[ $4 == PLAIN ]]; then
        echo "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$user\" password=\"$password\";"
      else
        echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$user\" password=\"$password\";"
      fi
    fi
    if [[ $2 == *SSL ]]; then
      echo "ssl.truststore.type=PEM"
      echo "ssl.truststore.location=$tls/ca.pem"
    fi
    if [[ $5 != - ]]; then
      echo "ssl.keystore.type=PEM"
      echo "ssl.keystore.location=$5"
      [[ -z ${6:-} ]] || echo "ssl.key.password=$6"
    fi
  } > "$state/$1"
}
props client-sasl-ssl.properties SASL_SSL "$p_sasl_ssl" SCRAM-SHA-512 "$tls/client.pem"
props client-sasl-ssl-256.properties SASL_SSL "$p_sasl_ssl" SCRAM-SHA-256 "$tls/client.pem"
props client-sasl-ssl-encrypted-key.properties SASL_SSL "$p_sasl_ssl" SCRAM-SHA-512 \
      "$tls/client-encrypted.pem" "$key_password"
props client-sasl-ssl-nocert.properties SASL_SSL "$p_nocert" SCRAM-SHA-512 -
props client-ssl.properties SSL "$p_ssl" - "$tls/client.pem"
props client-sasl-plaintext.properties SASL_PLAINTEXT "$p_sasl_plain" PLAIN -
props client-sasl-plaintext-scram.properties SASL_PLAINTEXT "$p_sasl_plain" SCRAM-SHA-512 -
