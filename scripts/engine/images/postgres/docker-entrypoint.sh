#!/usr/bin/env bash
# o11y-box's own entrypoint for the local postgres image (see the Dockerfile header). Behaviour
# follows the official image's entrypoint: env-driven first-run initialisation, then exec.
set -Eeuo pipefail

# VAR or VAR_FILE (docker secrets), never both; default $2.
env_or_file() {
    local var="$1" file_var="${1}_FILE" def="${2:-}"
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        echo >&2 "error: both $var and $file_var are set"; exit 1
    fi
    local val="$def"
    if [ -n "${!var:-}" ]; then val="${!var}"; elif [ -n "${!file_var:-}" ]; then val="$(<"${!file_var}")"; fi
    export "$var"="$val"; unset "$file_var"
}

wants_help() {
    local a
    for a; do case "$a" in -'?'|--help|--describe-config|-V|--version) return 0 ;; esac; done
    return 1
}

# psql against the temporary socket-only server
psql_local() {
    PGHOST= PGHOSTADDR= psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

init_cluster() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
        echo >&2 "error: PGDATA is empty and POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)"
        exit 1
    fi
    ls /docker-entrypoint-initdb.d/ >/dev/null
    local pwfile; pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list on purpose
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
    rm -f "$pwfile"

    shift  # "postgres"
    local auth="${POSTGRES_HOST_AUTH_METHOD:-}"
    [ -n "$auth" ] || auth="$(postgres -C password_encryption "$@")"
    printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

    export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -w start \
        -o "$(printf '%q ' "$@" -c listen_addresses='' -p "${PGPORT:-5432}")"

    local exists
    exists="$(psql_local --dbname postgres --set db="$POSTGRES_DB" --tuples-only \
        <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
    if [ -z "${exists// /}" ]; then
        psql_local --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi

    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "$0: running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
            *.sql) echo "$0: running $f"; psql_local --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) echo "$0: running $f"; gunzip -c "$f" | psql_local --dbname "$POSTGRES_DB" ;;
            *) [ -e "$f" ] && echo "$0: ignoring $f" ;;
        esac
    done

    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGPASSWORD
    echo "PostgreSQL init process complete; ready for start up."
}

if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ] && ! wants_help "$@"; then
    env_or_file POSTGRES_PASSWORD
    env_or_file POSTGRES_USER postgres
    env_or_file POSTGRES_DB "$POSTGRES_USER"
    env_or_file POSTGRES_INITDB_ARGS

    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$PGDATA" /var/run/postgresql
        chmod 700 "$PGDATA" || :
        chmod 3775 /var/run/postgresql || :
        find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
        exec gosu postgres "$BASH_SOURCE" "$@"
    fi
    chmod 700 "$PGDATA" 2>/dev/null || :

    if [ -s "$PGDATA/PG_VERSION" ]; then
        echo "PostgreSQL database directory appears to contain a database; skipping initialization"
    else
        init_cluster "$@"
    fi
fi

# PID 1 becomes the server itself: SIGTERM/SIGINT from `docker stop` reach postgres directly.
exec "$@"
