#!/usr/bin/env bash
# What the audit log costs (docs/PERFORMANCE.md, "Audit cost"): the same
# workloads on vaultfs builds mounted side by side, run in turns, so that
# the shared machine's drift (other jobs, other builds) hits all alike.
# Run as root:
#
#   REPS=5 tests/benches/audit-cost.sh NO_AUDIT_BIN AUDIT_BIN [AUDIT_BIN...]
#
# where NO_AUDIT_BIN is built with `--features bench-no-audit` and each
# AUDIT_BIN is a normal build (say main's and a branch's), labelled by its
# file name. Each phase is run REPS times on each mount, the order rotated
# every repetition: the small-file
# phases of ../shared/bench/fsbench.sh with the same helper (5,000 files of
# 1-8 KiB in 50 dirs, a fresh set per repetition: create, read back, delete)
# and a 128 MiB fsync'd sequential write, read back after dropping the page
# cache. Prints one CSV line per sample, then per metric and build the
# median and the median of the per-repetition ratios build / no-audit (for
# *_cpu_ms, the daemon's CPU time during the phase: lower is better).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: audit-cost.sh NO_AUDIT_BIN AUDIT_BIN [AUDIT_BIN...]" >&2; exit 2; }
REPS=${REPS:-5}
declare -A BIN=([noaudit]=$1) PID=()
VARIANTS=(noaudit)
shift
for b in "$@"; do VARIANTS+=("$(basename "$b")"); BIN[$(basename "$b")]=$b; done
HELPER=${HELPER:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/bench/fsbench_smallfiles.py}
W=${W:-/tmp/audit-cost}
NFILES=${NFILES:-5000}
SEQ_MB=${SEQ_MB:-128}
CSV=${CSV:-$W/results.csv}
[ "$(id -u)" = 0 ] || { echo "audit-cost: needs root (drop_caches, mount)" >&2; exit 2; }
for v in "${VARIANTS[@]}"; do rm -rf "${W:?}/$v"; done
mkdir -p "$W"
: > "$CSV"
printf 'benchpw-not-secret\n' > "$W/pw"
dd if=/dev/urandom of="$W/src" bs=1M count="$SEQ_MB" status=none

for v in "${VARIANTS[@]}"; do
  mkdir -p "$W/$v/store" "$W/$v/mnt"
  "${BIN[$v]}" init "$W/$v/store" --passphrase-file "$W/pw" --kdf-memory 8 --kdf-passes 1 >/dev/null
  "${BIN[$v]}" mount -f --passphrase-file "$W/pw" "$W/$v/store" "$W/$v/mnt" >>"$W/daemon-$v.log" 2>&1 &
  PID[$v]=$!
  for _ in $(seq 1 600); do mountpoint -q "$W/$v/mnt" && break; sleep 0.1; done
  mountpoint -q "$W/$v/mnt" || { echo "audit-cost: mount failed ($v)" >&2; exit 1; }
done
cleanup() {
  for v in "${VARIANTS[@]}"; do mountpoint -q "$W/$v/mnt" && "${BIN[$v]}" umount "$W/$v/mnt"; done
  wait
}
trap cleanup EXIT

now() { date +%s.%N; }
# The daemon's CPU time so far (user + system of all its threads), in ms.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/${PID[$1]}/stat"; }
emit() { echo "$1,$2,$3,$4" | tee -a "$CSV"; }

# phase REP VARIANT: one sample of every metric named in the case below.
sample() {
  local phase=$1 rep=$2 v=$3 d="$W/$3/mnt/1-working/r$2" c0 t0 t1 out
  c0=$(cpu_ms "$v")
  case $phase in
    create|read|delete)
      [ "$phase" = read ] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
      c0=$(cpu_ms "$v")
      out=$(python3 "$HELPER" "$phase" "$d" "$NFILES" 50 "$rep")
      emit "$rep" "$v" "small_$phase" "$(echo "$out" | awk '{printf "%.1f", $2/$4}')" ;;
    seq_write)
      t0=$(now); dd if="$W/src" of="$d.seq" bs=1M conv=fsync status=none; t1=$(now)
      emit "$rep" "$v" seq_write "$(echo "$t0 $t1" | awk -v n="$SEQ_MB" '{printf "%.1f", n*1.048576/($2-$1)}')" ;;
    seq_read)
      sync; echo 3 > /proc/sys/vm/drop_caches; c0=$(cpu_ms "$v")
      t0=$(now); dd if="$d.seq" of=/dev/null bs=1M status=none; t1=$(now)
      emit "$rep" "$v" seq_read "$(echo "$t0 $t1" | awk -v n="$SEQ_MB" '{printf "%.1f", n*1.048576/($2-$1)}')"
      rm -f "$d.seq" ;;
  esac
  emit "$rep" "$v" "${phase}_cpu_ms" "$(( $(cpu_ms "$v") - c0 ))"
}

for phase in create read delete seq_write seq_read; do
  echo "# $phase, load $(cut -d' ' -f1 /proc/loadavg)" >&2
  n=${#VARIANTS[@]}
  for rep in $(seq 1 "$REPS"); do
    for i in $(seq 0 $((n - 1))); do sample $phase "$rep" "${VARIANTS[$(( (i + rep) % n ))]}"; done
  done
done

python3 - "$CSV" <<'EOF'
import csv, statistics, sys
by = {}
for rep, v, metric, value in csv.reader(open(sys.argv[1])):
    by.setdefault(metric, {}).setdefault(v, {})[int(rep)] = float(value)
span = lambda x: f"{statistics.median(x.values()):.0f} ({min(x.values()):.0f}-{max(x.values()):.0f})"
print("| metric | build | median (min-max) | median of ratios to no-audit | ratio per repetition |")
print("|---|---|---|---|---|")
for m, d in by.items():
    base = d["noaudit"]
    print(f"| {m} | no audit | {span(base)} | | |")
    for v, a in d.items():
        if v == "noaudit":
            continue
        per = [a[r] / base[r] for r in sorted(a) if r in base and base[r]]
        print(f"| | {v} | {span(a)} | **{statistics.median(per):.2f}** | {' '.join(f'{x:.2f}' for x in per)} |")
EOF
