#!/usr/bin/env bash
# Side by side: `mta-sts daemon` and postfix-mta-sts-resolver on the same machine, the same test
# world and the same configuration file, measured alternately. See benches/README.md.
#
#   sudo benches/side-by-side.sh            # as root: it needs unshare, mount and ports 53/443
#
# Settings (environment): ROUNDS (3), RUN_SECONDS (5, each cached run), DOMAINS (4000, the
# world's bulk zone), PMSR_VERSION (1.5.1), PMSR_UVLOOP (0; 1 installs and uses uvloop),
# OUT (where results go; default a new directory under /tmp), KEEP_VENV (0), OURS_DANE (1: our
# daemon decides DANE first, its default; 0: `dane: false`, MTA-STS alone as the peer does),
# WORLD_TTL (300: the TTL of the world's records, so a DANE state is cached as real MX TTLs let
# it be; 0 makes every request look DANE up again).
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
RUN_SECONDS="${RUN_SECONDS:-5}"
DOMAINS="${DOMAINS:-4000}"
PMSR_VERSION="${PMSR_VERSION:-1.5.1}"
PMSR_UVLOOP="${PMSR_UVLOOP:-0}"
KEEP_VENV="${KEEP_VENV:-0}"
OURS_DANE="${OURS_DANE:-1}"
WORLD_TTL="${WORLD_TTL:-300}"
COLD=1000          # cold lookups: d0000 .. d0999, never asked before in a round
RSS_DOMAINS=3000   # cached policies: d1000 .. d3999 (the cached runs cycle over them)
THEIRS_PORT=8461
OURS_PORT=8462
FLOOR_PORT=8463

die() { echo "side-by-side: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
serve="$target/release/examples/serve"
ours_bin="$target/release/mta-sts"
load="$target/release/socketmap-load"
floor="$target/release/socketmap-floor"

if [ "${SIDE_BY_SIDE_INSIDE:-0}" != 1 ]; then
    # ---- Outside the namespace: build, install the peer, then re-execute inside. ----
    [ "$(id -u)" = 0 ] || die "run as root (unshare -n -m, ports 53 and 443, a bind mount)"
    for tool in unshare ip mount python3 cargo; do
        command -v "$tool" >/dev/null || die "$tool is missing"
    done
    OUT="${OUT:-$(mktemp -d /tmp/side-by-side.XXXXXX)}"
    mkdir -p "$OUT"
    say "building (release): mta-sts, the world (serve), socketmap-load, socketmap-floor"
    (
        cd "$repo"
        cargo build --release -p mta-sts-cli --bin mta-sts
        cargo build --release -p mta-sts-testkit --example serve
        cargo build --release -p mta-sts-benches --bin socketmap-load --bin socketmap-floor
    ) >&2
    say "installing postfix-mta-sts-resolver $PMSR_VERSION into a throwaway venv ($OUT/venv)"
    python3 -m venv "$OUT/venv"
    pkg="postfix-mta-sts-resolver==$PMSR_VERSION"
    [ "$PMSR_UVLOOP" = 1 ] && pkg="postfix-mta-sts-resolver[uvloop]==$PMSR_VERSION"
    "$OUT/venv/bin/pip" install --quiet --disable-pip-version-check "$pkg" >&2
    "$OUT/venv/bin/pip" freeze --disable-pip-version-check >"$OUT/pip-freeze.txt"
    export OUT
    exec unshare --net --mount --propagation private \
        env SIDE_BY_SIDE_INSIDE=1 "$0" "$@"
fi

# ---- Inside a private network and mount namespace. ----
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$KEEP_VENV" != 1 ]; then rm -rf "$OUT/venv"; fi
}
trap cleanup EXIT

ip link set lo up
printf 'nameserver 127.0.0.1\n' >"$OUT/resolv.conf"
mount --bind "$OUT/resolv.conf" /etc/resolv.conf

results="$OUT/results.jsonl"
: >"$results"

# The machine, for the record.
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "kernel: $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "python: $(python3 --version 2>&1)"
    echo "commit: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "settings: ROUNDS=$ROUNDS RUN_SECONDS=$RUN_SECONDS DOMAINS=$DOMAINS PMSR_UVLOOP=$PMSR_UVLOOP OURS_DANE=$OURS_DANE WORLD_TTL=$WORLD_TTL"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

say "starting the world: $DOMAINS bulk domains, DNS 127.0.0.1:53, HTTPS 127.0.0.1:443; measuring its ceiling"
"$serve" --domains "$DOMAINS" --ca-file "$OUT/ca.pem" --ttl "$WORLD_TTL" --ceiling \
    >"$OUT/world.out" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
    grep -q '^ready ' "$OUT/world.out" && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$OUT/world.out" >&2; die "the world did not start"; }
    sleep 0.1
done
grep -q '^ready ' "$OUT/world.out" || die "the world is not ready"
grep -v '^ceiling ' "$OUT/world.out" >&2
grep '^ceiling ' "$OUT/world.out" | sed 's/^ceiling //' >"$OUT/ceiling.json"

# The floor: a socketmap server that does no work (see benches/src/bin/socketmap_floor.rs).
"$floor" --addr "127.0.0.1:$FLOOR_PORT" &
pids+=($!)
declare -A pid_of
pid_of[world]=${pids[0]}
pid_of[floor]=$!

# One configuration file (benches/side-by-side.yml); the two copies differ only in the port.
config() { sed "s/^port: PORT\$/port: $1/" "$repo/benches/side-by-side.yml"; }
config "$THEIRS_PORT" >"$OUT/theirs.yml"
config "$OURS_PORT" >"$OUT/ours.yml"
# Ours decides DANE first by default (the peer has no such step); OURS_DANE=0 turns it off.
[ "$OURS_DANE" = 0 ] && echo "  dane: false" >>"$OUT/ours.yml"

port_of() {
    case $1 in
    theirs) echo "$THEIRS_PORT" ;;
    ours) echo "$OURS_PORT" ;;
    floor) echo "$FLOOR_PORT" ;;
    esac
}

start_daemons() {
    local round=$1
    SSL_CERT_FILE="$OUT/ca.pem" "$OUT/venv/bin/mta-sts-daemon" -c "$OUT/theirs.yml" -v warn \
        >>"$OUT/theirs.log" 2>&1 &
    pid_of[theirs]=$!
    pids+=($!)
    "$ours_bin" daemon --config "$OUT/ours.yml" --ca-file "$OUT/ca.pem" -v warn \
        >>"$OUT/ours.log" 2>&1 &
    pid_of[ours]=$!
    pids+=($!)
    for impl in theirs ours; do
        local port ok=0
        port=$(port_of "$impl")
        for _ in $(seq 100); do
            # An IP address is answered NOTFOUND at once by both, without a lookup.
            if "$load" --addr "127.0.0.1:$port" --key 192.0.2.1 --requests 1 --seconds 5 \
                --expect 'NOTFOUND ' >/dev/null 2>&1; then
                ok=1
                break
            fi
            sleep 0.1
        done
        [ "$ok" = 1 ] || die "$impl did not start (round $round; see $OUT/$impl.log)"
    done
}

stop_daemons() {
    for impl in theirs ours; do
        kill "${pid_of[$impl]}" 2>/dev/null || true
        wait "${pid_of[$impl]}" 2>/dev/null || true
    done
}

# CPU time (user + system) of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# measure ROW IMPL ROUND socketmap-load-args...: one run, one JSON line in results.jsonl (with
# the CPU seconds the server and the world used during the run).
measure() {
    local row=$1 impl=$2 round=$3
    shift 3
    local pid=${pid_of[$impl]} w=${pid_of[world]} c0 c1 w0 w1 cpu wcpu out
    c0=$(cpu_ticks "$pid")
    w0=$(cpu_ticks "$w")
    out=$("$load" --addr "127.0.0.1:$(port_of "$impl")" --label "$row/$impl/$round" "$@") ||
        echo "side-by-side: $row/$impl/$round had wrong answers or errors" >&2
    c1=$(cpu_ticks "$pid")
    w1=$(cpu_ticks "$w")
    cpu=$(awk -v t=$((c1 - c0)) 'BEGIN { printf "%.2f", t / 100 }')
    wcpu=$(awk -v t=$((w1 - w0)) 'BEGIN { printf "%.2f", t / 100 }')
    echo "{\"row\":\"$row\",\"impl\":\"$impl\",\"round\":$round,\"daemon_cpu_s\":$cpu,\"world_cpu_s\":$wcpu,${out#\{}" >>"$results"
}

expect_ok='OK secure match=mx.{key} servername=hostname'
# warm ROW CONNECTIONS ROUND: the 3,000 RSS domains looked up for the first time, by both
# daemons in turn, then their VmRSS (one JSON line each, row rss-ROW).
warm() {
    local row=$1 connections=$2 round=$3 rss
    for impl in theirs ours; do
        measure "$row" "$impl" "$round" --connections "$connections" --depth 1 \
            --requests "$RSS_DOMAINS" --bulk "$COLD:$RSS_DOMAINS" --seconds 300 \
            --expect "$expect_ok"
    done
    for impl in theirs ours; do
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/${pid_of[$impl]}/status")
        echo "{\"row\":\"rss-$row\",\"impl\":\"$impl\",\"round\":$round,\"rss_kib\":$rss}" >>"$results"
        echo "$impl: VmRSS $rss KiB with $RSS_DOMAINS cached policies ($row)" >&2
    done
}

for round in $(seq "$ROUNDS"); do
    # Memory of the policies themselves: the 3,000 fetched one at a time, so that what the
    # allocator keeps after many lookups at once (the warm-up below) does not count.
    say "round $round of $ROUNDS: fresh daemons, 3,000 lookups one at a time"
    start_daemons "$round"
    warm serial-3000 1 "$round"
    stop_daemons

    say "round $round of $ROUNDS: fresh daemons"
    start_daemons "$round"
    warm warm-3000 64 "$round"
    for shape in 1x1 64x1 64x16; do
        c=${shape%x*} d=${shape#*x}
        for impl in theirs ours floor; do
            measure "cached-$shape" "$impl" "$round" --connections "$c" --depth "$d" \
                --seconds "$RUN_SECONDS" --bulk "$COLD:$RSS_DOMAINS" --expect "$expect_ok"
        done
    done
    for impl in theirs ours; do
        measure cold-1000 "$impl" "$round" --connections 64 --depth 1 --requests "$COLD" \
            --bulk "0:$COLD" --seconds 300 --expect "$expect_ok"
    done
    stop_daemons
done

say "results (each run: $results)"
python3 "$repo/benches/side-by-side-table.py" "$results" "$OUT/ceiling.json" "$OUT/machine.txt" \
    | tee "$OUT/table.md"
echo "side-by-side: results in $OUT" >&2
