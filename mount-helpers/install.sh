#!/usr/bin/env bash
# Installs the vaultfs mount(8) helper (and, where systemd is in use, the
# vaultfs@.service template). Idempotent: files already up to date are left
# alone, so running it again changes nothing.
#
#   ./install.sh               install
#   ./install.sh --uninstall   remove what install put there
#
# Environment:
#   DESTDIR             staging root for packaging (default: empty, the live system)
#   PREFIX              where the vaultfs binary lives or goes (default: /usr/local)
#   SBINDIR             where mount(8) looks for helpers (default: /sbin)
#   UNITDIR             systemd unit directory (default: /etc/systemd/system,
#                       or $PREFIX/lib/systemd/system when DESTDIR is set)
#   INSTALL_UNIT        auto (default: when DESTDIR is set or systemd is running),
#                       yes or no
#   VAULTFS_BIN         path of the vaultfs binary to use (e.g. target/release/vaultfs)
#   VAULTFS_INSTALL_BIN record (default) or copy; what to do with VAULTFS_BIN:
#       record: write VAULTFS_BIN's absolute path into the installed helper
#               and unit; nothing else is copied (good for development and
#               tests: the helper keeps using that build).
#       copy:   install VAULTFS_BIN as $DESTDIR$PREFIX/bin/vaultfs and record
#               $PREFIX/bin/vaultfs (good for packages).
#   Without VAULTFS_BIN, $PREFIX/bin/vaultfs is recorded; the helper falls
#   back to searching (see mount.vaultfs) if it is not there at mount time.

set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SBINDIR=${SBINDIR:-/sbin}
if [[ -n $DESTDIR ]]; then
    UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
else
    UNITDIR=${UNITDIR:-/etc/systemd/system}
fi
INSTALL_UNIT=${INSTALL_UNIT:-auto}
VAULTFS_INSTALL_BIN=${VAULTFS_INSTALL_BIN:-record}

helper=$DESTDIR$SBINDIR/mount.fuse.vaultfs
helper_alias=$DESTDIR$SBINDIR/mount.vaultfs
unit=$DESTDIR$UNITDIR/vaultfs@.service

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

want_unit() {
    case $INSTALL_UNIT in
        yes) return 0 ;;
        no) return 1 ;;
        auto) [[ -n $DESTDIR || -d /run/systemd/system ]] ;;
        *) die "INSTALL_UNIT must be auto, yes or no" ;;
    esac
}

# Installs stdin as $1 with mode $2 unless $1 already has exactly that
# content and mode.
put() {
    local dest=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $dest && ! -L $dest ]] && cmp -s "$tmp" "$dest" \
        && [[ $(stat -c %a "$dest") == "${mode#0}" ]]; then
        say "up to date: $dest"
        rm -f "$tmp"
        return
    fi
    install -D -m "$mode" "$tmp" "$dest"
    rm -f "$tmp"
    say "installed: $dest"
}

# Single-quotes $1 for sh.
sh_quote() {
    local s=${1//\'/\'\\\'\'}
    printf "'%s'" "$s"
}

uninstall() {
    local f
    for f in "$helper" "$helper_alias" "$unit"; do
        if [[ -e $f || -L $f ]]; then
            rm -f "$f"
            say "removed: $f"
        fi
    done
    if [[ $VAULTFS_INSTALL_BIN == copy && -e $DESTDIR$PREFIX/bin/vaultfs ]]; then
        rm -f "$DESTDIR$PREFIX/bin/vaultfs"
        say "removed: $DESTDIR$PREFIX/bin/vaultfs"
    fi
    if [[ -z $DESTDIR && -d /run/systemd/system ]]; then
        systemctl daemon-reload || true
    fi
}

case ${1:-} in
    '') ;;
    --uninstall) uninstall; exit 0 ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac

# The binary the installed files will run.
if [[ -n ${VAULTFS_BIN:-} ]]; then
    [[ -x $VAULTFS_BIN && -f $VAULTFS_BIN ]] || die "VAULTFS_BIN=$VAULTFS_BIN is not an executable file"
    case $VAULTFS_INSTALL_BIN in
        record)
            bin=$(readlink -f -- "$VAULTFS_BIN")
            ;;
        copy)
            bin=$PREFIX/bin/vaultfs
            target=$DESTDIR$bin
            if [[ -f $target ]] && cmp -s "$VAULTFS_BIN" "$target"; then
                say "up to date: $target"
            else
                # Through a temporary name, so a running daemon's binary is
                # replaced, not overwritten in place.
                install -D -m 0755 "$VAULTFS_BIN" "$target.new"
                mv -f "$target.new" "$target"
                say "installed: $target"
            fi
            ;;
        *) die "VAULTFS_INSTALL_BIN must be record or copy" ;;
    esac
else
    bin=$PREFIX/bin/vaultfs
fi
case $bin in
    /*) ;;
    *) die "the recorded binary path must be absolute: $bin" ;;
esac

# The helper, with the binary's path recorded in it.
recorded="recorded_bin=$(sh_quote "$bin")"
grep -qx "recorded_bin=''" "$here/mount.vaultfs" || die "mount.vaultfs lacks its recorded_bin line"
while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line == "recorded_bin=''" ]]; then
        printf '%s\n' "$recorded"
    else
        printf '%s\n' "$line"
    fi
done <"$here/mount.vaultfs" | put "$helper" 0755

# mount -t vaultfs finds /sbin/mount.vaultfs; same script.
if [[ $(readlink -- "$helper_alias" 2>/dev/null || true) == mount.fuse.vaultfs ]]; then
    say "up to date: $helper_alias"
else
    ln -sfn mount.fuse.vaultfs "$helper_alias"
    say "installed: $helper_alias -> mount.fuse.vaultfs"
fi

if want_unit; then
    before=$(cat -- "$unit" 2>/dev/null || true)
    while IFS= read -r line || [[ -n $line ]]; do
        printf '%s\n' "${line//\/usr\/local\/bin\/vaultfs/"$bin"}"
    done <"$here/vaultfs@.service" | put "$unit" 0644
    if [[ -z $DESTDIR && -d /run/systemd/system && $before != "$(cat -- "$unit")" ]]; then
        systemctl daemon-reload || true
    fi
else
    say "skipped: $unit (systemd is not running; INSTALL_UNIT=yes forces it)"
fi

say "vaultfs binary: $bin"
