#!/usr/bin/env bash
# Install what the browser tests of the report need: Debian's chromium (headless, used
# through its own binary at /usr/bin/chromium, so Playwright never downloads a browser)
# and the Python driver (playwright) in the project's venv.
#
# Usage: .ci/install-browser.sh [PYTHON]   (PYTHON defaults to .venv/bin/python, else python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${1:-}"
if [ -z "$py" ]; then
    if [ -x "$here/.venv/bin/python" ]; then py="$here/.venv/bin/python"; else py="python3"; fi
fi

if [ ! -x /usr/bin/chromium ]; then
    sudo=""
    if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
/usr/bin/chromium --version

if ! "$py" -c "import playwright.sync_api" 2>/dev/null; then
    "$py" -m pip install -q "playwright>=1.40"
fi
"$py" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
