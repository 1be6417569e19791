#!/usr/bin/env bash
# scripts/setup.sh — set up a fresh Debian 12 machine (as root), build augur,
# then either run it or run the whole test suite.
#
#   bash scripts/setup.sh run  [augur serve flags...]   # build, then run the server
#   bash scripts/setup.sh test                          # build, then every test (what CI runs)
#   bash scripts/setup.sh build                         # only install + build
#
# Environment: FUZZ_SECONDS (default 60) per fuzz target in `test`;
# AUGUR_JOBS (default: nproc) build parallelism; SKIP_APT=1 skips apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-build}
shift || true
JOBS=${AUGUR_JOBS:-$(nproc)}

PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      liblmdb-dev lmdb-utils libzstd-dev libopenblas-dev libmicrohttpd-dev libcmocka-dev
      libsnappy-dev libprotobuf-c-dev protobuf-c-compiler libxxhash-dev libpcre2-dev
      libcurl4-openssl-dev libyaml-dev
      python3 python3-snappy python3-numpy curl openssl
      prometheus prometheus-node-exporter victoria-metrics prometheus-alertmanager)

install_packages() {
    [ "${SKIP_APT:-0}" = 1 ] && return 0
    local missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # Debian starts the server packages' services on install; the tests start
        # their own instances on free loopback ports, so stop the system ones.
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        for svc in prometheus prometheus-node-exporter victoria-metrics prometheus-alertmanager; do
            (systemctl stop "$svc" || service "$svc" stop) >/dev/null 2>&1 || true
        done
    fi
}

build() { # build DIR [cmake args...]
    local dir=$1
    shift
    cmake -S "$ROOT" -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j "$JOBS"
}

install_packages
case "$MODE" in
build)
    build "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
    ;;
run)
    build "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
    exec "$ROOT/build/cli/augur" serve "$@"
    ;;
test)
    # 1. warnings as errors, optimised build: every test, integration included
    build "$ROOT/build-ci" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAUGUR_WERROR=ON
    (cd "$ROOT/build-ci" && ctest --output-on-failure -j 2)
    # 2. ASan + UBSan: the unit tests
    build "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DAUGUR_WERROR=ON -DAUGUR_SANITIZE=ON
    (cd "$ROOT/build-asan" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure -L unit -j 2)
    # 3. libFuzzer targets, a short run each from the seed corpus
    CC=clang build "$ROOT/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAUGUR_FUZZ=ON
    bash "$ROOT/scripts/fuzz.sh" "$ROOT/build-fuzz" "${FUZZ_SECONDS:-60}"
    echo "setup: all tests passed"
    ;;
*)
    echo "usage: bash scripts/setup.sh run|test|build" >&2
    exit 2
    ;;
esac
