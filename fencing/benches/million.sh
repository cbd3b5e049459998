#!/usr/bin/env bash
# A million concurrent tasks under timeout + token, all completing normally:
# fencing against the hand-written `tokio::select!`, side by side.
#
#   benches/million.sh [ROUNDS] [N]      (defaults: 3 rounds, N = 1000000)
#
# Builds `examples/million.rs` in release, then runs both modes alternately,
# ROUNDS times each (the first mode alternates from round to round), each run
# under `/usr/bin/time -v`. Prints every run, then per mode the medians of the
# wall time the program measures (first spawn to last join), the wall time
# `time` measures (the whole process), CPU time and "Maximum resident set
# size", and the ratios fencing ÷ select against the targets (time <= 1.00,
# memory <= 1.05).
#
# Honours CARGO_TARGET_DIR. Needs GNU time at /usr/bin/time
# (Debian/Ubuntu: `apt-get install -y time`).
set -euo pipefail

rounds="${1:-3}"
n="${2:-1000000}"

if [[ ! -x /usr/bin/time ]]; then
    echo "million.sh: /usr/bin/time is missing; install GNU time (apt-get install -y time)" >&2
    exit 1
fi

cd "$(dirname "$0")/.."
cargo build --release --example million >&2
target_dir="$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="$target_dir/release/examples/million"
[[ -x "$bin" ]] || { echo "million.sh: $bin not built" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# field FILE KEY: the value of `KEY=value` in the program's output.
field() { sed -n "s/^$2=//p" "$1"; }

# Seconds from time's "h:mm:ss" or "m:ss.ss".
to_seconds() { awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }'; }

run() {
    local mode="$1" round="$2" out="$work/$1.$2"
    /usr/bin/time -v "$bin" "$mode" "$n" >"$out.stdout" 2>"$out.time"
    local rss elapsed user sys
    rss="$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$out.time")"
    elapsed="$(sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out.time" | to_seconds)"
    user="$(sed -n 's/^\s*User time (seconds): //p' "$out.time")"
    sys="$(sed -n 's/^\s*System time (seconds): //p' "$out.time")"
    printf '%s %s %s %s %s %s %s %s\n' \
        "$(field "$out.stdout" total_ms)" "$(field "$out.stdout" to_peak_ms)" \
        "$elapsed" "$user" "$sys" "$rss" \
        "$(field "$out.stdout" task_future_bytes)" "$(field "$out.stdout" rss_at_peak_kib)" \
        >>"$work/$mode.rows"
    printf 'round %d %-7s total %8s ms  to peak %8s ms  elapsed %5s s  user %5s s  sys %5s s  max RSS %8s KiB  RSS at peak %8s KiB\n' \
        "$round" "$mode" "$(field "$out.stdout" total_ms)" "$(field "$out.stdout" to_peak_ms)" \
        "$elapsed" "$user" "$sys" "$rss" "$(field "$out.stdout" rss_at_peak_kib)"
}

echo "million: N = $n tasks, 2 workers, $rounds rounds per mode, alternating"
for ((round = 1; round <= rounds; round++)); do
    if ((round % 2 == 1)); then
        run fencing "$round"
        run select "$round"
    else
        run select "$round"
        run fencing "$round"
    fi
done

# median MODE COLUMN
median() {
    awk -v c="$2" '{ print $c }' "$work/$1.rows" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
printf '%-7s | %9s | %10s | %9s | %6s | %6s | %12s | %12s | %11s\n' \
    mode "total ms" "to peak ms" "elapsed s" "user s" "sys s" "max RSS KiB" "peak RSS KiB" "future B"
printf -- '--------|-----------|------------|-----------|--------|--------|--------------|--------------|------------\n'
for mode in fencing select; do
    printf '%-7s | %9s | %10s | %9s | %6s | %6s | %12s | %12s | %11s\n' "$mode" \
        "$(median "$mode" 1)" "$(median "$mode" 2)" "$(median "$mode" 3)" "$(median "$mode" 4)" \
        "$(median "$mode" 5)" "$(median "$mode" 6)" "$(median "$mode" 8)" "$(median "$mode" 7)"
done

# ratio LABEL COLUMN TARGET
ratio() {
    awk -v label="$1" -v f="$(median fencing "$2")" -v s="$(median select "$2")" -v t="$3" 'BEGIN {
        r = f / s
        verdict = (t == "") ? "" : (r <= t ? sprintf("  (target <= %.2f met)", t) : sprintf("  (target <= %.2f MISSED)", t))
        printf "  %-28s %6.3f%s\n", label, r, verdict
    }'
}

echo
echo "fencing ÷ select, medians of $rounds runs each:"
ratio "total time (program)" 1 1.0
# A fenced task is one token waiter more than a `select!` (24 bytes in the
# token's waiter list); its future must stay in the `select!`'s 128-byte task
# size step (tokio's task cell is aligned to 128 bytes on x86-64).
ratio "max RSS (time -v)" 6 1.05
ratio "time to peak" 2 ""
ratio "elapsed (time -v)" 3 ""
ratio "user CPU" 4 ""
ratio "system CPU" 5 ""
ratio "task future size" 7 ""
