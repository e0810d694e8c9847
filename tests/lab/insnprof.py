#!/usr/bin/env python3
"""insnprof.py: where a profiled guest's instructions went, function by function.

    insnprof.py [--per N] [--top N] [--modules] RUN-DIR [PHASES]

RUN-DIR is a run-guest --profile run (its profile.txt and kallsyms). PHASES says what to show:
a phase number, or a sum and difference of them ("2-3": phase 2 less phase 3; "2-3-0+1": what
phase 2 adds over phase 3, less what phase 0 adds over phase 1); by default every phase on its
own. --per N divides every count by N (the iterations a phase timed), --top N shows that many
functions (default 40), largest difference first; --modules sums them by module instead (the
kernel's own code is "vmlinux", user space "<user>"). On the instruction clock a count is also
nanoseconds. Benchmarks import it (load, phases_ended, combine, parse_expr, by_module) to report
a profile themselves (perftest/fault_profile.py, perftest/guest_wire_profile.py).
"""
import argparse
import bisect
import collections
import os
import re
import sys


def load_symbols(path):
    """Sorted (address, name) of the kernel's and modules' code symbols."""
    syms = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) < 3 or p[1] not in 'tTwW':
                continue
            addr = int(p[0], 16)
            if addr:
                syms.append((addr, p[2] + (' ' + p[3] if len(p) > 3 else '')))
    syms.sort()
    return syms


def load_phases(path, syms):
    """{phase: Counter(function -> instructions)}; user space is the function '<user>'."""
    addrs = [a for a, _ in syms]
    phases = collections.defaultdict(collections.Counter)
    with open(path) as f:
        for line in f:
            phase, where, n = line.split()
            if where == 'user':
                name = '<user>'
            else:
                i = bisect.bisect_right(addrs, int(where, 16)) - 1
                name = syms[i][1] if i >= 0 else '<unknown>'
            phases[int(phase)][name] += int(n)
    return phases


def load(run):
    """The phases of the run directory @run (its kallsyms and profile.txt)."""
    return load_phases(os.path.join(run, 'profile.txt'),
                       load_symbols(os.path.join(run, 'kallsyms')))


def phases_ended(run):
    """How many phases the run directory @run has ended so far (each wrote at least its user
    line): the number the next phase will get."""
    if not os.path.exists(os.path.join(run, 'profile.txt')):
        return 0
    return len(load(run))


def parse_expr(expr):
    """'2-3-0+1' -> [(+1, 2), (-1, 3), (-1, 0), (+1, 1)]."""
    if not re.fullmatch(r'\d+([+-]\d+)*', expr):
        raise ValueError(f'bad phase expression {expr!r} (phases joined by + and -)')
    return [(-1 if sign == '-' else 1, int(num))
            for sign, num in re.findall(r'([+-]?)(\d+)', expr)]


def combine(phases, terms):
    total = collections.Counter()
    for sign, phase in terms:
        if phase not in phases:
            raise ValueError(f'no phase {phase} (the profile has {sorted(phases)})')
        for name, n in phases[phase].items():
            total[name] += sign * n
    return total


def by_module(counts):
    """Counter(function -> n) -> Counter(module -> n)."""
    out = collections.Counter()
    for name, n in counts.items():
        m = re.search(r' \[(\S+)\]$', name)
        out[m.group(1) if m else name if name == '<user>' else 'vmlinux'] += n
    return out


def report(title, counts, per, top, out):
    kernel = sum(n for name, n in counts.items() if name != '<user>')
    print(f'== {title}: {kernel / per:.1f} kernel instructions, '
          f'{counts["<user>"] / per:.1f} user', file=out)
    for name in sorted(counts, key=lambda s: (-abs(counts[s]), s))[:top]:
        if counts[name]:
            print(f'{counts[name] / per:12.1f}  {name}', file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--per', type=float, default=1.0)
    ap.add_argument('--top', type=int, default=40)
    ap.add_argument('--modules', action='store_true')
    ap.add_argument('run')
    ap.add_argument('phases', nargs='?')
    a = ap.parse_args(argv)
    try:
        phases = load(a.run)
        shown = by_module if a.modules else (lambda c: c)
        if a.phases:
            report(f'phases {a.phases}', shown(combine(phases, parse_expr(a.phases))), a.per,
                   a.top, sys.stdout)
        else:
            for p in sorted(phases):
                report(f'phase {p}', shown(phases[p]), a.per, a.top, sys.stdout)
    except (OSError, ValueError) as e:
        print(f'insnprof.py: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
