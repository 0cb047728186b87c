#!/usr/bin/env bash
# Installs everything the test suite needs into .venv and runs ruff, mypy and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && [ -x scripts/install-system-deps.sh ]; then
  scripts/install-system-deps.sh
fi
python3 -m venv .venv
.venv/bin/pip install -q -U pip
.venv/bin/pip install -q -e '.[test]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
if [ "$#" = 0 ]; then
  # The black-box suites once more on the other WebSocket engine: both must speak alike
  # (docs/protocol.md "WebSocket sessions"; the first run used the default, picows).
  KAPOKMQ_SERVER_WSENGINE=aiohttp .venv/bin/pytest tests/compat tests/interop
fi
