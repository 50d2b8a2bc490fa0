#!/bin/bash -eu
# Builds every cargo-fuzz target of fuzz/ (release mode with debug assertions, as the fuzz
# workflow runs them) and puts each binary in $OUT, with its hand-written seeds from
# fuzz/seeds/<target> as <target>_seed_corpus.zip.
cd "$SRC/mta-sts/fuzz"
cargo fuzz build -O --debug-assertions
release_dir=target/x86_64-unknown-linux-gnu/release
for target in $(cargo fuzz list); do
    cp "$release_dir/$target" "$OUT/"
    if [ -d "seeds/$target" ] && [ -n "$(ls -A "seeds/$target")" ]; then
        (cd "seeds/$target" && zip -q -r "$OUT/${target}_seed_corpus.zip" .)
    fi
done
