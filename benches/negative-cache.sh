#!/bin/bash
# The daemon's rate for domains without MTA-STS, before and after negative caching (issue 16
# item 4): N domains with no _mta-sts record (NXDOMAIN from the testkit world, SOA TTL and
# MINIMUM = $TTL s), each asked $REPEAT times by socketmap-load over $C connections, a fresh
# daemon per run, "before" and "after" alternately for $ROUNDS rounds. Prints one JSON line per
# run (socketmap-load's) and the median queries/s of each side with their ratio.
#
#   BEFORE=/path/to/old/mta-sts AFTER=target/release/mta-sts benches/negative-cache.sh
#
# BIN holds socketmap-load and the testkit's `serve` example (release builds):
#   cargo build --release -p mta-sts-cli -p mta-sts-benches --bin mta-sts --bin socketmap-load
#   cargo build --release -p mta-sts-testkit --example serve
# Unprivileged ports on 127.0.0.1 (no namespace needed: the daemon takes --resolver).
set -eu
BIN=${BIN:-target/release}
BEFORE=${BEFORE:?the mta-sts binary built from the commit before}
AFTER=${AFTER:-$BIN/mta-sts}
N=${N:-1000}; REPEAT=${REPEAT:-5}; ROUNDS=${ROUNDS:-3}; TTL=${TTL:-600}; C=${C:-16}
DNS=${DNS_PORT:-15353}; HTTPS=${HTTPS_PORT:-14443}; PORT=${PORT:-18462}
OUT=${OUT:-$(mktemp -d /tmp/negative-cache.XXXXXX)}
mkdir -p "$OUT"
for i in $(seq 0 $((N - 1))); do printf 'nx%04d.example\n' "$i"; done > "$OUT/keys"
cat > "$OUT/daemon.yml" <<YAML
host: 127.0.0.1
port: $PORT
reuse_port: true
cache:
  type: internal
  options:
    cache_size: 10000
default_zone:
  strict_testing: false
  timeout: 4
YAML
"$BIN/examples/serve" --ca-file "$OUT/ca.pem" --domains 10 --dns-port "$DNS" \
    --https-port "$HTTPS" --ttl "$TTL" > "$OUT/world.log" 2>&1 &
WORLD=$!
trap 'kill $WORLD 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^ready' "$OUT/world.log" && break; sleep 0.1; done
run() { # label binary
    "$2" daemon --config "$OUT/daemon.yml" --resolver "127.0.0.1:$DNS" --https-port "$HTTPS" \
        --ca-file "$OUT/ca.pem" -v warn > "$OUT/$1.daemon.log" 2>&1 &
    local daemon=$!
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
    "$BIN/socketmap-load" --addr "127.0.0.1:$PORT" --connections "$C" --depth 1 \
        --requests $((N * REPEAT)) --seconds 300 --keys "$OUT/keys" --expect NOTFOUND --prefix \
        --label "$1" 2>> "$OUT/$1.load.err" | tee -a "$OUT/runs.jsonl"
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
}
for _ in $(seq "$ROUNDS"); do
    run before "$BEFORE"
    run after "$AFTER"
done
python3 - "$OUT/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = {s: statistics.median(r["qps"] for r in runs if r["label"] == s) for s in ("before", "after")}
bad = sum(r["wrong"] + r["errors"] for r in runs)
print(f"median queries/s: before {med['before']:.0f}, after {med['after']:.0f}, "
      f"ratio {med['after'] / med['before']:.2f}x; wrong or failed replies: {bad}")
PY
echo "results in $OUT"
