# fairchance tasks. `just --list` shows them. Nothing here needs a system protoc.

set shell := ["bash", "-euo", "pipefail", "-c"]

buf_version := "1.75.0"

# List the recipes.
default:
    @just --list

# Run the whole suite in one process on SQLite files under ./data (no setup).
dev *args:
    cargo run --release --bin fairchance -- dev {{args}}

# Run the whole suite on PostgreSQL, a schema per service.
dev-postgres url="postgres://postgres@127.0.0.1:5432/postgres":
    cargo run --release --bin fairchance -- dev --postgres {{url}}

# The test suite (SQLite by default; PostgreSQL-only tests run when it is reachable).
test:
    cargo test --workspace

# The same suite with every database test on the local PostgreSQL.
test-postgres:
    FAIRCHANCE_TEST_BACKEND=postgres cargo test --workspace

# Formatting, clippy with warnings as errors, and buf lint of the protos.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    npx --yes @bufbuild/buf@{{buf_version}} lint proto

# Benchmarks against the same machine's raw baselines; prints a table, writes target/bench/latest.json.
bench *args:
    cargo run --release -p bench -- {{args}}

# Fuzz each target for `secs` seconds (cargo-fuzz on nightly; installed under target/tools).
fuzz secs="60":
    bash crates/fuzz/run.sh {{secs}}

# Validate deploy/: Kubernetes manifests and Dockerfile (kubernetes-validate, checkov).
deploy-check:
    bash deploy/check.sh

# Everything CI runs.
verify:
    bash .ci/run
