#!/usr/bin/env bash
# One database per service, each owned by a role of its own that is neither
# superuser nor able to create roles or databases: a service reaches its own
# database only, and nothing of the server beyond it. Only the owner (and the
# superuser) may connect: CONNECT and TEMP are revoked from PUBLIC, so no
# other login may even NOTIFY on the services' channels.
#
# Run by the postgres image on a fresh volume (docker-entrypoint-initdb.d),
# and safe to run again by hand on a volume made by an earlier release (its
# databases and tables then change owner):
#   docker compose exec -T postgres bash < deploy/postgres-init.sh
#
# Reads MOVIES_AUTH_DB_PASSWORD and MOVIES_CATALOG_DB_PASSWORD; the names
# default to auth/catalog and movies_auth/movies_catalog (AUTH_DB, AUTH_ROLE,
# CATALOG_DB, CATALOG_ROLE override them, for tests).
set -euo pipefail
: "${MOVIES_AUTH_DB_PASSWORD:?}" "${MOVIES_CATALOG_DB_PASSWORD:?}"
super=(psql -v ON_ERROR_STOP=1 -q --username "${POSTGRES_USER:-postgres}")

own() { # database role password
  "${super[@]}" --dbname postgres -v db="$1" -v role="$2" -v password="$3" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD %L', :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'role') \gexec
SELECT format('REVOKE CONNECT, TEMP ON DATABASE %I FROM PUBLIC', :'db') \gexec
SQL
  # Tables an earlier release made as the superuser become the role's.
  "${super[@]}" --dbname "$1" -v role="$2" <<'SQL'
SELECT format('ALTER TABLE public.%I OWNER TO %I', tablename, :'role')
  FROM pg_tables WHERE schemaname = 'public' \gexec
SELECT format('ALTER SEQUENCE public.%I OWNER TO %I', sequencename, :'role')
  FROM pg_sequences WHERE schemaname = 'public' \gexec
SQL
}

own "${AUTH_DB:-auth}" "${AUTH_ROLE:-movies_auth}" "$MOVIES_AUTH_DB_PASSWORD"
own "${CATALOG_DB:-catalog}" "${CATALOG_ROLE:-movies_catalog}" "$MOVIES_CATALOG_DB_PASSWORD"
