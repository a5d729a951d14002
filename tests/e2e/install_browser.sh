#!/usr/bin/env bash
# Get a chromium for the browser end-to-end test in tests/test_ui.py. Idempotent and quiet: prints
# nothing when a browser is already there or installs cleanly.
#  1. Debian's chromium (/usr/bin/chromium) through apt, when we are root or have password-less sudo;
#  2. otherwise the chromium that Playwright manages (`python -m playwright install chromium`), with the
#     Playwright of .venv (the test extra) or of python3;
#  3. otherwise one line on stderr saying how to get one, and exit status 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x /usr/bin/chromium ] && exit 0
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
if command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
  if { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } >"$log" 2>&1; then
    exit 0
  fi
  cat "$log" >&2
  echo "install_browser.sh: could not install Debian's chromium (see the apt output above)" >&2
  exit 1
fi

for python in .venv/bin/python python3; do
  if command -v "$python" >/dev/null 2>&1 && "$python" -c "import playwright" >/dev/null 2>&1; then
    if "$python" -m playwright install chromium >"$log" 2>&1; then
      exit 0
    fi
    cat "$log" >&2
    echo "install_browser.sh: '$python -m playwright install chromium' failed (see its output above)" >&2
    exit 1
  fi
done

echo "install_browser.sh: no root/apt for Debian's chromium and no Playwright yet; run: python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e '.[test]' && .venv/bin/python -m playwright install chromium" >&2
exit 1
