#!/usr/bin/env bash
# The browser test: headless Chromium drives the page of the real roster binary.
# Installs what it needs on a bare Debian machine (Chromium, ChromeDriver, the npm
# packages), builds the binary, then runs test.mjs. Screenshots: tests/artifacts/browser/.
# ROSTER_BIN=path skips the build and tests that binary instead.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

apt_updated=0
install() { # install <debian package...>
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "browser test: installing chromium and chromium-driver"
  install chromium chromium-driver
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "browser test: installing node and npm"
  install nodejs npm
fi

cd "$here"
# npm ci only when the installed packages are not those of the lock file.
wanted=$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')
have=$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')
if [ "$wanted" != "$have" ]; then
  echo "browser test: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ -z "${ROSTER_BIN:-}" ]; then
  # Always build: cargo does nothing when the binary is fresh, and the page is compiled in.
  echo "browser test: cargo build"
  (cd "$root" && cargo build --bin roster)
fi

echo "browser test: node test.mjs"
exec node test.mjs
