#!/usr/bin/env python3
"""Per-mapping memory of a process: /proc/PID/smaps summed by file (anonymous mappings as
[anon], plus [heap] and [stack]), Rss / Pss / Private_Dirty in MiB, largest first.

    python3 bench/smaps.py PID [LABEL]
"""
import collections
import os
import sys

pid = sys.argv[1]
label = sys.argv[2] if len(sys.argv) > 2 else pid
totals = collections.defaultdict(lambda: collections.Counter())
name = None
with open(f"/proc/{pid}/smaps") as smaps:
    for line in smaps:
        fields = line.split()
        if not fields[0].endswith(":") or "-" in fields[0]:
            # A mapping's header: address perms offset dev inode [path]
            path = " ".join(fields[5:]) if len(fields) > 5 else ""
            name = os.path.basename(path) if path.startswith("/") else (path or "[anon]")
            if name.startswith("[anon:"):
                name = "[anon]"
            continue
        key = fields[0][:-1]
        if key in ("Rss", "Pss", "Private_Dirty", "Private_Clean", "Shared_Clean", "Shared_Dirty"):
            totals[name][key] += int(fields[1])

mib = lambda kib: f"{kib / 1024:.1f}"
rows = sorted(totals.items(), key=lambda item: -item[1]["Rss"])
all_rss = sum(c["Rss"] for _, c in rows)
all_pss = sum(c["Pss"] for _, c in rows)
all_dirty = sum(c["Private_Dirty"] for _, c in rows)
print(f"{label}: Rss {mib(all_rss)} MiB, Pss {mib(all_pss)}, Private_Dirty {mib(all_dirty)}")
print(f"  {'mapping':32} {'Rss':>6} {'Pss':>6} {'PrivDirty':>9}")
for name, c in rows:
    if c["Rss"] < 100:
        continue
    print(f"  {name[:32]:32} {mib(c['Rss']):>6} {mib(c['Pss']):>6} {mib(c['Private_Dirty']):>9}")
