#!/usr/bin/env bash
# First start of the compose PostgreSQL: one role and one database per service
# that owns a database (CAREVAULT_DATABASES). Each role's password is read from
# its compose secret file, never from the environment.
set -euo pipefail

for service in ${CAREVAULT_DATABASES}; do
    password_file="/run/secrets/${service}_database_password"
    if [[ ! -r "$password_file" ]]; then
        echo "carevault init: $password_file is missing" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        --set=role="$service" --set=password="$(tr -d '\n' < "$password_file")" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
done
