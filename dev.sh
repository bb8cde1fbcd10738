#!/usr/bin/env bash
# The two set-up commands of the README:
#   ./dev.sh demo   local stack + two workers + traffic with a tenant that turns hot
#   ./dev.sh test   the whole test suite (starts its own private stack)
# Both create .venv and install the project into it first (again only when pyproject.toml changes).
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python >= 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
for tool in java mvn; do
  command -v "$tool" >/dev/null || {
    echo "error: '$tool' not found: the local Kafka stack is fetched with Maven and runs on Java 17+" \
         "(Debian: apt-get install openjdk-17-jre-headless maven)" >&2
    exit 2
  }
done

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.routing-app-installed
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  cp pyproject.toml "$stamp"
fi

command=${1:-}
shift || true

# The live page's test drives Debian's Chromium headless (playwright, with no browser download of
# its own). As root with apt-get (CI, a fresh Debian machine) it is installed once, quietly.
if [ "$command" = test ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium (Debian package) for the live page test..." >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
      || echo "warning: could not install chromium; the live page test will fail" >&2
  else
    echo "warning: chromium not found; the live page test will fail (Debian: apt-get install chromium)" >&2
  fi
fi

case "$command" in
  demo) exec .venv/bin/routing-app demo "$@" ;;
  test) exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: ./dev.sh demo | test [pytest args]" >&2; exit 2 ;;
esac
