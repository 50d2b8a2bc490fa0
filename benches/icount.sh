#!/bin/sh
# Instructions per operation under callgrind: benches/icount.sh OP [N]
# (see benches/examples/icount.rs). Needs valgrind.
set -e
op=$1; n=${2:-1000}
dir=${CARGO_TARGET_DIR:-target}
cargo build -q --profile bench -p mta-sts-benches --example icount
bin=$dir/release/examples/icount
ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 | sed -n 's/.*Collected : //p'; }
a=$(ir "$op" 0); b=$(ir "$op" "$n")
echo "$op: $(( (b - a) / n )) instructions per operation"
