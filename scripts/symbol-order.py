#!/usr/bin/env python3
"""The sidecar's symbol ordering file from callgrind runs: every function of BINARY that ran
(callgrind --dump-instr=yes), named by a symbol that is unique in the binary (lld orders
sections by the symbols listed; a name that several local symbols share would pull in all their
sections). Functions of the first directory's runs come first, then what each next directory's
runs add, each group in address order: code every sidecar runs stays dense.

    scripts/symbol-order.py BINARY OUT DIR...     # DIR: callgrind output files
"""
import bisect
import os
import re
import subprocess
import sys

binary, out, directories = sys.argv[1], sys.argv[2], sys.argv[3:]


def executed_addresses(outputs):
    """Executed instruction addresses in the object whose path is BINARY (object offsets)."""
    executed = set()
    for path in outputs:
        executed |= addresses_in(path)
    if not executed:
        sys.exit(f"no instruction of {binary} in {len(outputs)} callgrind outputs")
    return executed


def addresses_in(path):
    executed = set()
    names, current, address = {}, False, 0
    for line in open(path, errors="replace"):
        if line[0] in "0123456789+-*":
            token = line.split(None, 1)[0]
            if token.startswith("0x"):
                address = int(token, 16)
            elif token[0] in "+-":
                address += int(token)
            if current:
                executed.add(address)
            continue
        match = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if match:
            kind, number, name = match.groups()
            if name:
                names[number] = name
            if kind == "ob":
                current = names[number] == binary
    return executed


symbols, count = [], {}
nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
for line in nm.splitlines():
    fields = line.split(" ", 2)
    if len(fields) == 3:
        count[fields[2]] = count.get(fields[2], 0) + 1
        if fields[1] in "tTwW":
            symbols.append((int(fields[0], 16), fields[2]))
symbols.sort()
starts = [address for address, _ in symbols]
order, listed, unnamed = [], set(), 0
for directory in directories:
    ran = set()
    for address in executed_addresses([os.path.join(directory, name) for name in os.listdir(directory)]):
        index = bisect.bisect_right(starts, address) - 1
        if index >= 0 and index not in listed:
            ran.add(index)
    listed |= ran
    group = [symbols[i][1] for i in sorted(ran) if count[symbols[i][1]] == 1]
    unnamed += len(ran) - len(group)
    order += group
    print(f"{directory}: {len(group)} functions")
with open(out, "w") as f:
    f.write("\n".join(order) + "\n")
print(f"{len(order)} functions ({unnamed} more without a unique name) -> {out}")
