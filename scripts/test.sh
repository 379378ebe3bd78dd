#!/usr/bin/env bash
# make test: every module's tests, with the integration tiers switched on
# (CODELAB_INTEGRATION=1 makes a missing program a failure, not a skip),
# then a bounded fuzz run of the user_data parser.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export CODELAB_INTEGRATION=1
export PATH=${CODELAB_CACHE:-$HOME/.cache/codelab}/bin:$PATH

fail=0
for m in agent roles imager e2e tools internal; do
  [ -f "$m/go.mod" ] || continue
  echo "==> go vet ($m)"
  (cd "$m" && go vet ./...) || fail=1
  echo "==> go test ($m)"
  (cd "$m" && go test -count=1 -timeout 20m ./...) || fail=1
done
echo "==> fuzz user_data parser (${FUZZTIME:-15s})"
(cd agent && go test ./internal/userdata -run '^$' -fuzz FuzzParse -fuzztime "${FUZZTIME:-15s}") || fail=1
exit $fail
