#!/usr/bin/env bash
# o11y-box's own entrypoint for the local OpenSearch image (see the Dockerfile header); behaviour
# follows the official 2.x image's entrypoint, ending in `exec` so the JVM is PID 1.
set -Eeuo pipefail
export OPENSEARCH_HOME=/usr/share/opensearch
export OPENSEARCH_PATH_CONF="${OPENSEARCH_PATH_CONF:-$OPENSEARCH_HOME/config}"

if [ $# -eq 0 ] || [ "${1:0:1}" = '-' ]; then
    set -- opensearch "$@"
fi
if [ "$1" != opensearch ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    echo >&2 "OpenSearch cannot run as root. Please start your container as another user."
    exit 1
fi
umask 0002
# cgroup stats inside a container: the cgroup path as seen from inside is /.
export OPENSEARCH_JAVA_OPTS="-Dopensearch.cgroups.hierarchy.override=/ ${OPENSEARCH_JAVA_OPTS:-}"

# Environment variables named like settings (at least two dot-separated lowercase words, or
# `processors`) become -E options, e.g. cluster.name=x -> -Ecluster.name=x.
opts=()
while IFS= read -r -d '' entry; do
    key="${entry%%=*}"; value="${entry#*=}"
    if [[ "$key" =~ ^[a-z0-9_]+\.[a-z0-9_]+ || "$key" == processors ]] && [ -n "$value" ]; then
        opts+=("-E${key}=${value}")
    fi
done < <(env -0)

plugin_switch() {  # plugin dir, switch name, value
    if [ -d "$OPENSEARCH_HOME/plugins/$1" ]; then return 0; fi
    if [ -n "${3:-}" ]; then echo "$2=$3: plugin $1 is not in this distribution, nothing to switch"; fi
    return 1
}
if plugin_switch opensearch-security DISABLE_SECURITY_PLUGIN "${DISABLE_SECURITY_PLUGIN:-}"; then
    if [ "${DISABLE_SECURITY_PLUGIN:-}" = true ]; then opts+=("-Eplugins.security.disabled=true"); fi
fi
plugin_switch opensearch-security DISABLE_INSTALL_DEMO_CONFIG "${DISABLE_INSTALL_DEMO_CONFIG:-}" || :
plugin_switch opensearch-performance-analyzer DISABLE_PERFORMANCE_ANALYZER_AGENT_CLI \
    "${DISABLE_PERFORMANCE_ANALYZER_AGENT_CLI:-}" || :

exec "$@" "${opts[@]}"
