#!/usr/bin/env bash
# Installs Debian's chromium (the headless browser the dashboard test drives) when it is not on
# PATH.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  echo "chromium not found; installing Debian's package" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
chromium --version
