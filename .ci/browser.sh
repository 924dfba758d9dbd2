#!/usr/bin/env bash
# The movies page in a real headless Chromium (Debian's chromium and
# chromium-driver, installed when missing) driven by selenium, against the
# one-command stack on an ephemeral port.
#
#   bash .ci/browser.sh [MOVIES_BINARY] [SCREENSHOT_DIR]
#
# Screenshots go to SCREENSHOT_DIR (default: a temporary folder, printed).
# With UPDATE_SCREENSHOT=1 the screenshot after the refused second rating is copied to
# docs/screenshot.png for the README.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/movies}")
shots=${2:-$(mktemp -d)}
mkdir -p "$shots"

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "installing chromium and chromium-driver"
  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1))
fi
venv=${XDG_CACHE_HOME:-$HOME/.cache}/movies-selenium
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'selenium==4.50.0'
fi

source .ci/stack.sh
start_stack "$bin"

timeout 300 "$venv/bin/python" tests/browser/page_test.py "$base" "$shots"
echo "screenshots: $shots"
if [ "${UPDATE_SCREENSHOT:-}" = 1 ]; then
  cp "$(ls "$shots"/*-refused.png | head -n1)" docs/screenshot.png
  echo "docs/screenshot.png updated"
fi
