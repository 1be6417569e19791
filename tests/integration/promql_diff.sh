#!/bin/bash
# PromQL differential test against a real Prometheus 2.42 (Debian package):
# tests/integration/promql_diff.py does the work; this wrapper finds the
# harness (tests/test_promql_diff next to the augur binary's build tree).
# Exit 0 when every divergence is listed in docs/promql-differences.md.
set -euo pipefail
SRC="${AUGUR_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}"
if [ -n "${AUGUR_BIN:-}" ]; then
  BUILD="$(cd "$(dirname "$AUGUR_BIN")/.." && pwd)"
else
  BUILD="${AUGUR_BUILD:-$SRC/build}"
fi
HARNESS="$BUILD/tests/test_promql_diff"
PROM="${PROMETHEUS_BIN:-/usr/bin/prometheus}"
if [ ! -x "$PROM" ]; then echo "SKIP: no Prometheus at $PROM"; exit 0; fi
if [ ! -x "$HARNESS" ]; then echo "harness $HARNESS not built" >&2; exit 1; fi
exec timeout 800 /usr/bin/python3 "$SRC/tests/integration/promql_diff.py" --harness "$HARNESS" "$@"
