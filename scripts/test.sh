#!/usr/bin/env bash
# Installs and starts everything the test suite needs, then runs it:
#   ./scripts/test.sh            the whole suite
#   ./scripts/test.sh -run Gateway ./internal/gateway/   go test arguments pass through
# Idempotent: a second run installs nothing. Servers a test needs are
# started by the test itself on a free loopback port and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools="$root/.tools"

say() { printf 'test.sh: %s\n' "$*" >&2; }

# Debian packages the tests use: node and npm drive the official npm
# client, Azurite and the Event Hubs AMQP stand-in; curl runs the line
# tapline demo prints; redis-server backs the shared rate limits; chromium
# drives the dashboard's browser tests.
apt_pkgs=(nodejs npm curl redis-server chromium)
missing=()
for p in "${apt_pkgs[@]}"; do
  command -v "$p" >/dev/null 2>&1 && continue
  [ "$p" = nodejs ] && command -v node >/dev/null 2>&1 && continue
  missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages the tests drive, pinned: the official openai client, Azurite
# (Blob) and rhea (the Event Hubs AMQP stand-in).
mkdir -p "$tools"
if ! cmp -s scripts/tools/package.json "$tools/package.json" || [ ! -d "$tools/node_modules/openai" ] || [ ! -d "$tools/node_modules/azurite" ]; then
  say "installing npm test tools into .tools/"
  cp scripts/tools/package.json scripts/tools/package-lock.json "$tools/"
  # The registry sometimes drops a connection mid-download: try again, from
  # the cache first.
  for attempt in 1 2 3; do
    if (cd "$tools" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null); then
      break
    fi
    if ((attempt == 3)); then
      say "npm ci failed three times"
      exit 1
    fi
    say "npm ci failed; trying again"
    sleep $((attempt * 5))
  done
fi

# Go modules.
go mod download

export TAPLINE_NODE_MODULES="$tools/node_modules"
export TAPLINE_TEST_REQUIRE="${TAPLINE_TEST_REQUIRE:-node,curl,azurite,eventhubs-stub,redis,chromium}"

if (($#)); then
  exec go test "$@"
fi
exec go test -count=1 -timeout 25m ./...
