#!/usr/bin/env bash
# Installs the Debian packages the test suite uses as external oracles:
# chromium (console tests; fonts-wqy-microhei so screenshots of the Chinese console show
# glyphs, not boxes), serf + Go memberlist sources (gossip interop), wrk (the HTTP Send
# benchmark, benchmarks/wrk.py).
set -euo pipefail
packages=(chromium fonts-wqy-microhei serf golang-go golang-github-hashicorp-memberlist-dev
  golang-github-gorilla-websocket-dev wrk)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
