#!/usr/bin/env bash
# Open vSwitch's userspace conntrack measured on this machine, beside statewall
# (docs/PERFORMANCE.md, "Comparison with Open vSwitch").
#
#   bash scripts/compare-ovs/run.sh            # 3 repetitions of everything, CPU 1
#   REPS=5 CPU=0 bash scripts/compare-ovs/run.sh
#   QUICK=1 bash scripts/compare-ovs/run.sh    # skips the 1M-flow capture (needs ~6 GB RSS)
#   OVS_DIR=/somewhere bash scripts/compare-ovs/run.sh   # work directory (default /work/ovs)
#
# Builds what is missing first, in OVS_DIR (nothing of OVS is kept in this
# repository): OVS 3.1.0 from Debian's openvswitch-source package, only
# tests/ovstest; the ct-scale driver (ct-scale.c, beside this script); the
# statewall captures. Logs: $OVS_DIR/logs/<run-id>/, summary (min / median of
# each figure) printed at the end and written to .../summary.txt.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
D=${OVS_DIR:-/work/ovs}
mkdir -p "$D"
SRC=$D/openvswitch
OVSTEST=$SRC/tests/ovstest
CT=$D/ct-scale
SW=${STATEWALL:-$REPO/target/release/statewall}
REPS=${REPS:-3}
CPU=${CPU:-1}
QUICK=${QUICK:-0}
SW_TOO=${SW_TOO:-1}   # also run `statewall bench` on the same captures, interleaved

# ---- build (only what is missing) -------------------------------------------
if [ ! -x "$OVSTEST" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y openvswitch-source autoconf automake libtool libssl-dev \
        python3 pkg-config libcap-ng-dev time
    mkdir -p "$D"
    [ -d "$SRC" ] || tar -C "$D" -xf /usr/src/openvswitch/openvswitch.tar.gz
    cd "$SRC"
    [ -f Makefile ] || ./configure            # no DPDK, no kernel module; -g -O2
    # the generated headers (odp-netlink.h, IDL sources) first: a bare
    # `make tests/ovstest` does not build BUILT_SOURCES
    echo 'print-%: ; @echo $($*)' > /tmp/ovs-print-var.mk
    make -j2 $(make -s -f Makefile -f /tmp/ovs-print-var.mk print-BUILT_SOURCES)
    make -j2 tests/ovstest
fi
if [ ! -x "$CT" ] || [ "$HERE/ct-scale.c" -nt "$CT" ]; then
    gcc -O2 -g -DHAVE_CONFIG_H -I"$SRC" -I"$SRC/include" -I"$SRC/lib" -Wall \
        -o "$CT" "$HERE/ct-scale.c" "$SRC/lib/.libs/libopenvswitch.a" \
        -lssl -lcrypto -lcap-ng -latomic -lm -lpthread -lrt
fi
for f in 200000:flows200k 1000000:flows1m; do
    n=${f%%:*}; name=${f##*:}
    [ "$QUICK" = 1 ] && [ "$name" = flows1m ] && continue
    if [ ! -s "$D/$name.pcap" ]; then
        [ -x "$SW" ] || (cd "$REPO" && cargo build --release -p statewall)
        "$SW" synth --scenario flows --flows "$n" --out "$D/$name.pcap"
    fi
done

# ---- measurements ------------------------------------------------------------
RUN=$(date -u +%Y%m%dT%H%M%SZ)
L=$D/logs/$RUN
mkdir -p "$L"
echo "logs in $L"
{
    echo "date: $(date -u)"; echo "uptime: $(uptime)"; echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "ovs: $(grep -m1 -o '3\.[0-9.]*' $SRC/debian/changelog 2>/dev/null || true) $(head -1 $SRC/debian/changelog)"
} > "$L/env.txt"

T='/usr/bin/time -f TIME:wall=%e:user=%U:sys=%S:maxrss_kb=%M'
PIN="taskset -c $CPU"

run() {  # run NAME REP CMD... ; stdout+stderr (incl. /usr/bin/time) to the log
    local name=$1 rep=$2; shift 2
    echo "== $name #$rep: $*"
    { echo "CMD: $*"; echo "LOAD: $(cut -d' ' -f1-3 /proc/loadavg)"; "$@"; } > "$L/$name.$rep.txt" 2>&1
    grep -E 'conntrack:|Mpps|TIME:' "$L/$name.$rep.txt" | grep -v '^CMD:' | sed 's/^/   /' || true
}

for rep in $(seq 1 "$REPS"); do
    # ovstest's own benchmark: one thread, one batch of 32 identical UDP
    # packets (= one flow) sent over and over; prints wall ms of the loop.
    for n in 1000000 10000000 50000000; do
        run "bench-hot-$n" "$rep" $T $PIN "$OVSTEST" test-conntrack benchmark 1 $n 32
    done
    # change_connection=1: 32 distinct flows (one per batch slot), over and over
    run "bench-32flows-50000000" "$rep" $T $PIN "$OVSTEST" test-conntrack benchmark 1 50000000 32 1
    # batch size 1 (one conntrack_execute() call per packet)
    run "bench-hot-batch1-10000000" "$rep" $T $PIN "$OVSTEST" test-conntrack benchmark 1 10000000 1
    # ct-scale: the same hot flow but established (a reply was seen)
    run "ctscale-hot-50000000" "$rep" $T $PIN "$CT" hot 50000000
    # ct-scale: N distinct flows: inserts, lookups (unreplied, established),
    # N/10 inserts into the full table, RSS per connection
    for n in 200000 1000000; do
        run "ctscale-udp-$n" "$rep" $T $PIN "$CT" udp $n 3
    done
    # ovstest's pcap mode: reads the capture in batches of 32, conntrack with
    # commit, prints one line per packet (to /dev/null here); no timer of its
    # own, so the whole process is timed.
    for name in flows200k flows1m; do
        [ "$QUICK" = 1 ] && [ "$name" = flows1m ] && continue
        run "ovstest-pcap-$name" "$rep" bash -c "$T $PIN $OVSTEST test-conntrack pcap $D/$name.pcap 32 > /dev/null"
    done
    # ct-scale pcap: capture preloaded, the same per-batch work timed alone
    for name in flows200k flows1m; do
        [ "$QUICK" = 1 ] && [ "$name" = flows1m ] && continue
        run "ctscale-pcap-$name" "$rep" $T $PIN "$CT" pcap "$D/$name.pcap" 2
    done
    # statewall on the same captures in the same minutes, for context
    # (conntrack only, no rules; nf_conntrack_max raised so that 1M fits)
    if [ "$SW_TOO" = 1 ] && [ -x "$SW" ]; then
        for name in flows200k flows1m; do
            [ "$QUICK" = 1 ] && [ "$name" = flows1m ] && continue
            run "statewall-bench-$name" "$rep" $T "$SW" bench --no-progress --cpu "$CPU" \
                --sysctl net.netfilter.nf_conntrack_max=4194304 "$D/$name.pcap"
        done
    fi
done

python3 "$HERE/summarize.py" "$L" | tee "$L/summary.txt"
