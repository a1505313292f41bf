#!/bin/sh
# Writes the secrets docker-compose.yml mounts (compose `secrets:`) into a directory, ./secrets
# by default: a private CA, server certificates for Kafka, Redis and Triton (names = the compose
# service names), and random passwords for the Kafka SASL/PLAIN users and the Redis ACL user.
# Existing files are kept: delete the directory to start over. For a real deployment put your
# own CA-signed certificates and passwords under the same file names instead.
#
#   deploy/compose/gen-secrets.sh [directory]
set -eu
out=${1:-secrets}
mkdir -p "$out"
cd "$out"
umask 022   # compose (without swarm) bind-mounts these files: the services run as other users

password() { [ -s "$1" ] || openssl rand -hex 24 | tr -d '\n' >"$1"; }

if [ ! -s ca.pem ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=pocketvl compose CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
fi

# server <name>: <name>_key.pem and <name>_cert.pem, signed by the CA, for the compose service
# name, the Kubernetes Service of that name in namespace pocketvl (deploy/k8s), and localhost.
server() {
  [ -s "$1_cert.pem" ] && return 0
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$1_key.pem" -out "$1.csr" \
    2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:%s.pocketvl.svc,DNS:%s.pocketvl.svc.cluster.local,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
    "$1" "$1" "$1" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$1.ext" -out "$1_cert.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
server kafka
server redis
server triton
# Kafka reads a PEM keystore: the PKCS#8 key and the certificate in one file.
cat kafka_key.pem kafka_cert.pem >kafka_keystore.pem
# openssl writes keys 0600; the services read them as their own non-root users.
chmod 644 kafka_key.pem redis_key.pem triton_key.pem kafka_keystore.pem

password kafka_worker_password
password kafka_admin_password
password redis_worker_password

# The broker's SASL/PLAIN users (JAAS, read through KAFKA_OPTS).
cat >kafka_server_jaas.conf <<JAAS
KafkaServer {
  org.apache.kafka.common.security.plain.PlainLoginModule required
  username="admin"
  password="$(cat kafka_admin_password)"
  user_admin="$(cat kafka_admin_password)"
  user_worker="$(cat kafka_worker_password)";
};
JAAS

# The topic-creation step's client settings (admin user over SASL_SSL).
cat >kafka_admin_client.properties <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$(cat kafka_admin_password)";
ssl.truststore.type=PEM
ssl.truststore.location=/run/secrets/ca.pem
PROPS

# Redis ACL: no default user; the worker may only touch its own keys (key_prefix "pocketvl");
# the healthcheck user may only PING.
hash=$(printf '%s' "$(cat redis_worker_password)" | openssl dgst -sha256 -r | cut -d' ' -f1)
cat >redis_users.acl <<ACL
user default off
user worker on #$hash ~pocketvl:* resetchannels -@all +@read +@write +@keyspace +@connection -@dangerous
user healthcheck on nopass -@all +ping +hello +auth
ACL
echo "secrets in $(pwd)"
