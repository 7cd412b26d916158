#!/usr/bin/env bash
# Run every cargo-fuzz target of fuzz/ for SECONDS each (default 60) and fail on any crash
# (issue 7). Prints one summary line per target: executions, coverage, corpus, crashes, CPU time.
#
#   scripts/fuzz.sh [SECONDS]
#
# Environment:
#   FUZZ_TARGETS="capture engine"   run only these targets (default: all of `cargo fuzz list`)
#   FUZZ_SANITIZER=address          build with a sanitizer (default none: the code is safe Rust with
#                                   `forbid(unsafe_code)`, and without ASan the targets run ~8x faster)
#   FUZZ_ARGS="-jobs=2"             extra libFuzzer arguments
#
# Builds are release builds with debug assertions (so integer overflow panics, as in tests).
# Installs what is missing: the nightly toolchain (rustup, minimal profile) and cargo-fuzz.
# Seeds come from scripts/fuzz-seed.sh (run first, idempotent). A crash leaves the input in
# fuzz/artifacts/<target>/ and the script exits 1 after running the remaining targets; reproduce
# with `cargo +nightly fuzz run -O -a -s none <target> fuzz/artifacts/<target>/<file>`.
set -uo pipefail

secs="${1:-60}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz" || exit 2
sanitizer="${FUZZ_SANITIZER:-none}"

if ! command -v rustup >/dev/null 2>&1; then
    echo "fuzz: rustup is required (cargo-fuzz needs a nightly toolchain)" >&2
    exit 2
fi
if ! command -v c++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
    echo "fuzz: libfuzzer-sys compiles libFuzzer and needs a C++ compiler (Debian: apt-get install g++)" >&2
    exit 2
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal || exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked || exit 2
fi

"$root/scripts/fuzz-seed.sh" >/dev/null || echo "fuzz: seeding failed, fuzzing from what is there" >&2

build=(-O -a -s "$sanitizer")
echo "fuzz: building (cargo +nightly fuzz build ${build[*]})" >&2
if ! cargo +nightly fuzz build "${build[@]}" >/tmp/fuzz-build.$$ 2>&1; then
    cat /tmp/fuzz-build.$$ >&2
    rm -f /tmp/fuzz-build.$$
    exit 2
fi
rm -f /tmp/fuzz-build.$$

targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
failed=()
logdir="$(mktemp -d)"
touch "$logdir/start"
printf '%-14s %12s %8s %8s %8s %8s %8s %s\n' target executions exec/s cov ft corpus cpu_s crashes
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before="$(find "artifacts/$t" -type f | wc -l)"
    log="$logdir/$t.log"
    TIMEFORMAT='%U %S'
    cpu="$({ time cargo +nightly fuzz run "${build[@]}" "$t" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1; echo $? >"$logdir/$t.rc"; } 2>&1)"
    rc="$(cat "$logdir/$t.rc")"
    cpu_s="$(awk '{printf "%.0f", $1 + $2}' <<<"$cpu")"
    execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1)"
    last="$(grep -E '^#[0-9]+' "$log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' <<<"$last" | awk '{print $2}')"
    ft="$(grep -o 'ft: [0-9]*' <<<"$last" | awk '{print $2}')"
    corp="$(find "corpus/$t" -type f | wc -l)"
    eps="$(grep -o 'exec/s: [0-9]*' <<<"$last" | awk '{print $2}')"
    after="$(find "artifacts/$t" -type f | wc -l)"
    crashes=$((after - before))
    if [ "$rc" != 0 ] && [ "$crashes" = 0 ]; then crashes=1; fi
    printf '%-14s %12s %8s %8s %8s %8s %8s %s\n' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$corp" "${cpu_s:-?}" "$crashes"
    if [ "$rc" != 0 ]; then
        failed+=("$t")
        echo "---- $t failed (exit $rc); the end of its log:" >&2
        grep -A3 'panicked at\|ERROR: libFuzzer\|ERROR: AddressSanitizer' "$log" | cut -c1-600 | head -20 >&2
        grep -A2 'ALARM: working on the last Unit\|Reproduce with:' "$log" | grep -v '^--$\|^$' | cut -c1-300 >&2
        find "artifacts/$t" -type f -newer "$logdir/start" | sed 's/^/    artifact: /' >&2
    fi
done
rm -rf "$logdir"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all targets ran ${secs}s without a crash"
