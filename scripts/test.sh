#!/bin/sh
# The whole test suite: installs what the tests need, then runs every test under Deno.
#   npm test                     everything
#   npm test -- tests/unit       a subset (paths are passed to deno test)
set -eu
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/deno ] || npm ci --no-audit --no-fund
sh scripts/setup.sh
node_modules/.bin/deno run -A scripts/gen.ts --check
if [ "$#" -eq 0 ]; then set -- tests/; fi
exec node_modules/.bin/deno test -A --no-check=remote "$@"
