#!/usr/bin/env bash
# Side-by-side benchmark of two `parley` builds, alternating runs (A, B, A, B, …) so that the
# shared machine's drift falls on both alike. Prints each run's figures and the medians.
#
#   scripts/bench/ab.sh BEFORE_BIN AFTER_BIN [ROUNDS] [CAMPAIGN_RECIPIENTS] [AUDIENCE_CONTACTS]
#
# Build each side with `cargo build --release -p parley-cli` (a worktree per commit).
set -euo pipefail
a=$1 b=$2 rounds=${3:-3} recipients=${4:-100000} contacts=${5:-1000000}
out=$(mktemp -d)
for i in $(seq "$rounds"); do
  for side in a b; do
    bin=$a; [ "$side" = b ] && bin=$b
    (cd "$out" && RUST_LOG=warn "$bin" bench campaign --recipients "$recipients" 2>&1) >"$out/campaign-$side-$i.txt"
    (cd "$out" && RUST_LOG=warn "$bin" bench audience --contacts "$contacts" 2>&1) >"$out/audience-$side-$i.txt"
  done
done
python3 - "$out" "$rounds" <<'PY'
import re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
pats = {
    "campaign msg/s": ("campaign", r"→ (\d+) messages/s"),
    "campaign CPU µs/msg": ("campaign", r"→ ([\d.]+) µs per message"),
    "campaign peak RSS MiB": ("campaign", r"peak RSS:\s+([\d.]+) MiB"),
    "audience import s": ("audience", r"import:\s+([\d.]+) s"),
    "audience count s": ("audience", r"count:\s+([\d.]+) s"),
    "audience personalize+read s": ("audience", r"rendering only, ([\d.]+) s with reading"),
    "audience peak RSS MiB": ("audience", r"peak RSS:\s+([\d.]+) MiB"),
}
print(f"| figure | before (runs) | after (runs) | before median | after median | after/before |")
print("|---|---|---|---|---|---|")
for name, (bench, pat) in pats.items():
    vals = {}
    for side in "ab":
        vals[side] = []
        for i in range(1, rounds + 1):
            m = re.search(pat, open(f"{out}/{bench}-{side}-{i}.txt").read())
            vals[side].append(float(m.group(1)) if m else float("nan"))
    ma, mb = statistics.median(vals["a"]), statistics.median(vals["b"])
    fmt = lambda xs: ", ".join(f"{x:g}" for x in xs)
    print(f"| {name} | {fmt(vals['a'])} | {fmt(vals['b'])} | {ma:g} | {mb:g} | {mb/ma:.3f} |")
print(f"\n(raw output in {out})")
PY
