#!/bin/sh
# Create or update Grafana's read-only database login from the environment.
#
# The migrations create the group role cbm_grafana (SELECT only, no login, no
# secret: sql/0005_readonly_role.sql); this script creates the login that uses
# it, with the password from GRAFANA_DB_PASSWORD. It is idempotent: run again
# after changing the password and the login takes the new one.
#
# compose runs it on every `docker compose up` (service grafana-db-user, after
# migrate). Elsewhere point psql's environment at the database as its owner or
# an administrator and run it:
#
#   PGHOST=db.example PGUSER=cbm PGDATABASE=cbm PGPASSWORD=... \
#   GRAFANA_DB_USER=grafana GRAFANA_DB_PASSWORD=... sh grafana/db-init/grafana-reader.sh
set -eu

: "${GRAFANA_DB_PASSWORD:?set GRAFANA_DB_PASSWORD to the password Grafana logs in with}"
reader="${GRAFANA_DB_USER:-grafana}"

psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 \
    -v reader="$reader" -v password="$GRAFANA_DB_PASSWORD" <<'SQL'
SET client_min_messages = warning;
-- The group role, should the migrations not have run yet (they grant its privileges).
SELECT 'CREATE ROLE cbm_grafana NOLOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cbm_grafana') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'reader')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'reader') \gexec
ALTER ROLE :"reader" WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    CONNECTION LIMIT 20 PASSWORD :'password';
GRANT cbm_grafana TO :"reader";
-- Belt and braces: even a privilege granted by mistake cannot be used to write,
-- and a runaway dashboard query cannot hold the database for long.
ALTER ROLE :"reader" SET default_transaction_read_only = on;
ALTER ROLE :"reader" SET statement_timeout = '30s';
SQL
echo "database login ${reader}: ready (member of cbm_grafana, read-only)"
