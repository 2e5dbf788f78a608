#!/usr/bin/env bash
# Herald's test command: builds the workspace and runs every test, unit and
# black-box. Installs what the suites need when it is missing (below: Debian
# packages, npm packages, PyPI tools); the suites start their own
# redis-server processes on free ports.
#
# Arguments go to `cargo test` (`./scripts/test.sh -p herald-tests --test
# resume`, `./scripts/test.sh lease`). The last line is always
# `tests: N passed, N failed`, summed over every test binary and doc-test run;
# CI reads it. The exit status is cargo's, and non-zero when no test ran (a
# filter that matches nothing is a mistake, not a pass).
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server (with TLS, Sentinel and Cluster modes), redis-cli, and
# openssl, which makes the TLS suite's certificates.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1 \
  || ! command -v openssl >/dev/null 2>&1; then
  echo "redis-server, redis-cli or openssl not found: installing them"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools openssl
fi

# promtool (Debian's `prometheus` package) checks and unit-tests the alert
# rules in deploy/. Only the tool is used: no Prometheus server is started.
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found: installing the prometheus package"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus
fi

# The browser suites drive Debian's Chromium (headless).
if ! command -v chromium >/dev/null 2>&1; then
  echo "chromium not found: installing it"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi

# Real JavaScript clients (tests/clients/: an AgentHQ SDK-shaped client on
# `ws`, and playwright-core driving Chromium) need Node.js 20+ and their npm
# packages, installed from package-lock.json when missing or out of date.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node or npm not found: installing them"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi
clients="$PWD/tests/clients"
if ! cmp -s "$clients/package-lock.json" "$clients/node_modules/.package-lock.json.installed"; then
  echo "installing the test clients' npm packages (tests/clients)"
  (cd "$clients" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  cp "$clients/package-lock.json" "$clients/node_modules/.package-lock.json.installed"
fi

# PyPI tools, kept in a virtualenv under target/ (pinned versions; installed
# when missing): the server API's OpenAPI checks (schemathesis,
# openapi-spec-validator), and the Helm chart suite's Helm engine
# (helm-python-sdk: Helm 4's Go SDK as a library, no helm binary needed) and
# Kubernetes API schemas (kubernetes-validate). Python >= 3.10.
py="$PWD/target/py"
py_tools="schemathesis==4.32.5 openapi-spec-validator==0.9.0 helm-python-sdk==0.2.2 kubernetes-validate==1.37.0"
if ! [ -f "$py/installed" ] || [ "$(cat "$py/installed")" != "$py_tools" ]; then
  echo "installing $py_tools from PyPI into target/py"
  python3 -m venv "$py"
  # shellcheck disable=SC2086 # one word per requirement
  "$py/bin/pip" install -q $py_tools
  echo "$py_tools" > "$py/installed"
fi
export PATH="$py/bin:$PATH"

# The docsfy CLI from PyPI (declares Python >= 3.12), run unchanged by the
# docsfy suite. A Python new enough is looked for as a user would: on PATH
# (python3.13, python3.12, python3), then among pyenv's installed versions.
# When none can be had, the reason is left for the suite to report.
docsfy="$PWD/target/docsfy-venv"
rm -f "$docsfy.why"
if ! "$docsfy/bin/docsfy" --help >/dev/null 2>&1; then
  found=""
  candidates="python3.13 python3.12 python3"
  if command -v pyenv >/dev/null 2>&1; then
    for v in "$(pyenv root)"/versions/3.*; do candidates="$candidates $v/bin/python3"; done
  fi
  for py3 in $candidates; do
    if "$py3" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      found="$py3"; break
    fi
  done
  if [ -n "$found" ]; then
    echo "installing docsfy 1.9.3 from PyPI with $found into target/docsfy-venv"
    rm -rf "$docsfy"
    "$found" -m venv "$docsfy"
    "$docsfy/bin/pip" install -q "docsfy==1.9.3" || echo "pip install docsfy==1.9.3 failed (PyPI unreachable?)" > "$docsfy.why"
  else
    mkdir -p target
    echo "no Python >= 3.12 found (docsfy 1.9.3 requires it): tried $candidates; install one (pyenv install 3.12, or apt-get install python3.12) and rerun" > "$docsfy.why"
  fi
fi

# The black-box suites run the gateway binary, so build it first.
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Every suite runs even after one fails, and the summary below must be printed
# whatever cargo's status: errexit stays off until it has been captured.
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
if [ "$status" -eq 0 ] && [ $((passed + failed)) -eq 0 ]; then
  echo "no test ran: check the filter ($*)" >&2
  status=1
fi
echo "tests: $passed passed, $failed failed"
exit "$status"
