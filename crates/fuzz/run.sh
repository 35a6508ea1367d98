#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: `crates/fuzz/run.sh [seconds per target]`.
# Installs cargo-fuzz (pinned) under target/tools on first use; needs the nightly toolchain,
# which libFuzzer's instrumentation requires.
set -euo pipefail
secs="${1:-60}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/target/tools"
if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
  cargo install cargo-fuzz --version 0.13.2 --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"
cd "$root"
# Our crates forbid unsafe code, so AddressSanitizer would find nothing the Rust runtime's own
# checks do not; without it the targets build in a fraction of the time, which is what lets CI
# afford a run on every change. Debug assertions stay on (overflow checks included).
targets=(submission event_envelope playbook)
cargo +nightly fuzz build --fuzz-dir crates/fuzz --sanitizer none
for target in "${targets[@]}"; do
  corpus="$root/target/fuzz-corpus/$target"
  mkdir -p "$corpus"
  echo "fuzzing $target for ${secs}s"
  cargo +nightly fuzz run --fuzz-dir crates/fuzz --sanitizer none "$target" "$corpus" -- \
    -max_total_time="$secs" -max_len=8192 -print_final_stats=1
done
