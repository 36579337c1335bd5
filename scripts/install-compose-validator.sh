#!/bin/sh
# Installs a Docker Compose CLI so that tests/unit/test_docker_compose.py can
# validate docker/compose.yaml offline (`config -q` needs no Docker engine).
# Nothing to do when `docker compose` or `docker-compose` already answers;
# otherwise installs Debian's docker-compose package without the engine it
# recommends. Needs root (CI runs as root).
set -eu

if docker compose version >/dev/null 2>&1 || docker-compose version >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-compose-validator: no Docker Compose CLI found; run this script as root," >&2
    echo "or install one yourself: apt-get install --no-install-recommends docker-compose" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-compose-validator: no apt-get here; install Docker Compose (v2 plugin or" >&2
    echo "docker-compose) by your platform's means, then rerun the tests" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
docker-compose version >/dev/null
