#!/bin/bash
# Runs once, when the PostgreSQL container starts on an empty volume (the
# image runs /docker-entrypoint-initdb.d/*.sh as its superuser): a
# database per service, each owned by a role of its own that may connect
# to nothing else, so that no service reads another's tables (SPEC §1);
# and a role for the exporter, which reads the server's statistics only.
#
# Passwords come from the environment (deploy/compose/.env):
# PG_<SERVICE>_PASSWORD and PG_EXPORTER_PASSWORD. EMPORIUM_DB_PREFIX, empty
# in Compose, names the roles and databases of a test run on a shared
# server (deploy/compose/run-on-loopback). PGHOST and friends apply as
# usual, so the same script runs against any server.
set -euo pipefail
prefix=${EMPORIUM_DB_PREFIX:-}
superuser=${POSTGRES_USER:-postgres}
for service in identity catalog inventory basket ordering notification recommendation; do
  variable="PG_${service^^}_PASSWORD"
  password=${!variable:?"$variable is required"}
  psql -v ON_ERROR_STOP=1 -q --username "$superuser" --dbname postgres \
    -v name="$prefix$service" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
  echo "database $prefix$service, owned by role $prefix$service"
done
psql -v ON_ERROR_STOP=1 -q --username "$superuser" --dbname postgres \
  -v name="${prefix}exporter" -v password="${PG_EXPORTER_PASSWORD:?PG_EXPORTER_PASSWORD is required}" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password' IN ROLE pg_monitor;
SQL
echo "role ${prefix}exporter (pg_monitor) for the exporter"
