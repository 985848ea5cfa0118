#!/usr/bin/env python3
"""The release sidecar's code layout from callgrind runs, in two files lld reads:

- ORDER (`--symbol-ordering-file`): every function of BINARY that ran (callgrind
  --dump-instr=yes) and that a symbol unique in the binary names (lld orders sections by the
  symbols listed; a name that several local symbols share would pull in all their sections).
- SCRIPT (a linker script, `-T`): the code that ran in input sections no such symbol names:
  the compiler's unnamed private functions (`.text..L__unnamed_N`, value witnesses and the
  like, one per function with -function-sections) and functions whose local name several
  objects share. It names them by object file and section (MAP, the link map of BINARY) and
  lays them out first in `.text`, just before the ORDER functions (lld sorts the script's
  catch-all `*(.text .text.*)` by ORDER). One `.text`, so valgrind still sees all of it as the
  binary's code.
  Left where they were, a few hundred such functions of a few dozen bytes each kept a
  64 KiB fault-around window resident all over `.text` (bench/README.md, "Idle memory").

Functions of the first directory's runs come first, then what each next directory's runs add,
each group in address order: code every sidecar runs stays dense.

    scripts/symbol-order.py BINARY MAP ORDER SCRIPT DIR...     # DIR: callgrind output files
"""
import bisect
import os
import re
import subprocess
import sys

binary, link_map, order_out, script_out, directories = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]


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
                # BINARY, or the same build stripped elsewhere (bench/instructions.sh's copy).
                current = names[number] == binary or os.path.basename(names[number]) == "sidecar"
    return executed


def code_sections():
    """(address, size, file pattern, section) of every input section of code in the link map;
    the pattern is None where a linker script could not name the file or section exactly."""
    line_pattern = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s{9}(\S.*):\((\.text[^)]*)\)$")
    sections = []
    for line in open(link_map, errors="replace"):
        match = line_pattern.match(line)
        if not match:
            continue
        address, size, path, section = int(match.group(1), 16), int(match.group(2), 16), match.group(3), match.group(4)
        member = re.match(r"^(.*)\((.*)\)$", path)  # archive(member.o)
        if member:
            pattern = "*" + os.path.basename(member.group(1)) + ":" + member.group(2)
        else:
            pattern = "*/" + "/".join(path.split("/")[-2:])  # Module.build/File.swift.o
        if not re.fullmatch(r"[\w$.+:*/-]+", pattern) or not re.fullmatch(r"[\w$.]+", section):
            pattern = None
        sections.append((address, size, pattern, section))
    if not sections:
        sys.exit(f"no code sections in {link_map}")
    sections.sort()
    return sections


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
sections = code_sections()
section_starts = [address for address, *_ in sections]

order, script, listed, placed, unnamed = [], [], set(), set(), 0
for directory in directories:
    ran, ran_sections = set(), set()
    for address in executed_addresses([os.path.join(directory, name) for name in os.listdir(directory)]):
        index = bisect.bisect_right(starts, address) - 1
        if index >= 0 and index not in listed:
            ran.add(index)
        index = bisect.bisect_right(section_starts, address) - 1
        if index >= 0 and address < sections[index][0] + sections[index][1]:
            ran_sections.add(index)
    listed |= ran
    group = [symbols[i][1] for i in sorted(ran) if count[symbols[i][1]] == 1]
    order += group
    # A section is placed by ORDER when a listed symbol starts inside it.
    named = set()
    for i in ran:
        if count[symbols[i][1]] == 1:
            index = bisect.bisect_right(section_starts, symbols[i][0]) - 1
            if index >= 0:
                named.add(index)
    rest = [i for i in sorted(ran_sections - named - placed) if sections[i][2]]
    unnamed += len(ran_sections - named - placed) - len(rest)
    placed |= ran_sections
    script += [f"    {sections[i][2]}({sections[i][3]})" for i in rest]
    print(f"{directory}: {len(group)} functions, {len(rest)} unnamed sections")
with open(order_out, "w") as f:
    f.write("\n".join(order) + "\n")
with open(script_out, "w") as f:
    f.write("/* Written by scripts/symbol-order.sh (scripts/symbol-order.py): first in .text, the code the\n"
            "   sidecar runs that no unique symbol names; then the rest, which lld sorts by\n"
            "   symbol-order.txt (what ran first). */\n"
            "SECTIONS {\n  .text : {\n" + "\n".join(script) + "\n"
            "    *(.text .stub .text.* .gnu.linkonce.t.*)\n"
            "  }\n} INSERT BEFORE .init;\n")
print(f"{len(order)} functions -> {order_out}; {len(script)} sections -> {script_out} ({unnamed} more not nameable)")
