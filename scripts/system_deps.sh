#!/usr/bin/env bash
# Debian packages the test suite and benchmarks need. Idempotent and quiet when all is present.
set -euo pipefail
need=()
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
command -v wrk >/dev/null || need+=(wrk)
command -v runuser >/dev/null || need+=(util-linux)
command -v unzip >/dev/null || need+=(unzip)
# The compose e2e: with no engine answering, it starts a private dockerd (scripts/engine/), and
# with no registry answering it builds base images with mmdebstrap (scripts/engine/local_images.py).
if ! command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then need+=(docker.io iptables); fi
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
[ ${#need[@]} -eq 0 ] && exit 0
echo "system-deps: installing ${need[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
