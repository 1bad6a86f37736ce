#!/usr/bin/env bash
# Installs what tests/conformance.rs runs, idempotently (a second run only
# checks):
#   pjdfstest 0.2.2  the POSIX file system test suite (Rust rewrite)
#   fsx 0.3.2        the file system exerciser (Rust port of FreeBSD fsx)
# both with `cargo install --locked` into ROOT/bin (default:
# ${CARGO_TARGET_DIR:-target}/conformance-tools), and the user "tests" that
# pjdfstest switches to besides "nobody" (needs root).
#
#   bash tests/conformance/install-tools.sh [ROOT]
#
# The first run builds both tools from crates.io: several minutes on two cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PJDFSTEST_VERSION=0.2.2
FSX_VERSION=0.3.2
root=${1:-${CARGO_TARGET_DIR:-target}/conformance-tools}
mkdir -p "$root"
root=$(cd "$root" && pwd)

# Version of the tool installed at $root/bin/$1, or nothing.
installed() {
    "$root/bin/$1" --version 2>/dev/null | awk '{print $2}' || true
}

for spec in "pjdfstest $PJDFSTEST_VERSION" "fsx $FSX_VERSION"; do
    read -r name version <<<"$spec"
    if [[ $(installed "$name") == "$version" ]]; then
        echo "conformance tools: $name $version present in $root/bin"
        continue
    fi
    echo "conformance tools: installing $name $version into $root (cargo install --locked)"
    start=$SECONDS
    # A temporary build directory of cargo install's own, not the project's
    # target directory (which the test run uses).
    env -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET_DIR \
        cargo install --locked --quiet --root "$root" --version "=$version" "$name"
    echo "conformance tools: $name $version built in $((SECONDS - start))s"
    [[ $(installed "$name") == "$version" ]] || {
        echo "conformance tools: $root/bin/$name does not report version $version" >&2
        exit 1
    }
done

# pjdfstest's second dummy user (the first is "nobody"), with a group of its own.
if ! getent passwd tests >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "conformance tools: user \"tests\" missing; run this as root to create it" >&2
        exit 1
    fi
    useradd --system --user-group --no-create-home --home-dir / --shell /usr/sbin/nologin tests
    echo "conformance tools: created user \"tests\""
fi
