#!/usr/bin/env bash
# Install Debian's chromium for the browser end-to-end test in tests/test_ui.py (driven by Playwright
# with executable_path=/usr/bin/chromium; `playwright install` is never run). Idempotent and quiet:
# prints nothing when chromium is already there or installs cleanly, the apt log when it fails.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "install_browser.sh: could not install Debian's chromium (see the apt output above)" >&2
  exit 1
fi
