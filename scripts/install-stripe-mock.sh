#!/usr/bin/env bash
# Install stripe-mock (Stripe's OpenAPI-driven, stateless API mock) for the provider contract tests.
#
#   scripts/install-stripe-mock.sh [BIN_DIR]
#
# BIN_DIR defaults to $STRIPE_MOCK_BIN_DIR, then ./.tools/bin. Idempotent: when the binary already
# exists nothing is downloaded. STRIPE_MOCK_VERSION pins a version (default: v0.203.0, known to build here).
# Needs a Go toolchain (go >= 1.21) and access to the Go module proxy.
set -euo pipefail

bin_dir="${1:-${STRIPE_MOCK_BIN_DIR:-$(pwd)/.tools/bin}}"
version="${STRIPE_MOCK_VERSION:-v0.203.0}"
binary="$bin_dir/stripe-mock"

# `stripe-mock -version` prints "master" for go-installed builds; the module version is in the
# binary's build info.
module_version() {
    go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3 }' || true
}

if [[ -x "$binary" ]]; then
    echo "stripe-mock already installed: $binary $(module_version "$binary")"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "error: 'go' not found; install a Go toolchain to build stripe-mock" >&2
    exit 1
fi

mkdir -p "$bin_dir"
bin_dir="$(cd "$bin_dir" && pwd)"
echo "installing github.com/stripe/stripe-mock@$version into $bin_dir"
GOBIN="$bin_dir" go install "github.com/stripe/stripe-mock@$version"
echo "installed: $binary $(module_version "$binary")"
