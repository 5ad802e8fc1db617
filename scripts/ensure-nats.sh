#!/usr/bin/env bash
# Installs nats-server from Debian's packages when it is not on PATH.
set -euo pipefail
if ! command -v nats-server >/dev/null 2>&1; then
  echo "nats-server not found; installing Debian's package" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
fi
nats-server --version
