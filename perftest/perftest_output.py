"""perftest's result table, read by guest_perftest.py and guest_wire.py.

perftest prints a header line of column names, then one data line per message size, e.g.
(perftest's RESULT_FMT_LAT and REPORT_FMT_LAT):
     #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    ...
     2       1000          5.12           25.40        5.61                5.80           ...
The names are '#word' or words ending in '[unit]', and some hold spaces ("BW average[MiB/sec]",
"99% percentile[usec]", "fps[flow per sec]"); the spaces between names vary (a single one
between "#bytes #iterations"), so the header is split on white space and the words of a name
joined up to the one that closes its '[unit]'. A data line is white-space separated numbers.
"""


def header_names(line):
    """The column names of a perftest header LINE, in order."""
    names, words = [], []
    for word in line.split():
        words.append(word)
        if word.startswith("#") and len(words) == 1 or word.endswith("]"):
            names.append(" ".join(words))
            words = []
    if words:  # a trailing name without a unit ("tps average" of a --run_infinitely report)
        names.append(" ".join(words))
    return names


def base_name(name):
    """NAME without its unit: "t_typical[usec]" -> "t_typical"."""
    return name.split("[", 1)[0].strip()


def result_rows(out):
    """The rows of the first result table in perftest's output OUT: a list of {name: value}
    (name with its unit, as printed), one per data line, values as float."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("#bytes"):
            head = header_names(line)
            rows = []
            for data in lines[i + 1:]:
                fields = data.split()
                if not fields or not fields[0].isdigit():
                    if rows:
                        break
                    continue
                rows.append({h: float(v) for h, v in zip(head, fields)})
            return rows
    return []


def result(out, column):
    """The value of COLUMN (a name without its unit: "t_typical", "BW average") in the first
    data line of perftest's output OUT, or None when OUT has no such column or no data line."""
    for row in result_rows(out)[:1]:
        for name, value in row.items():
            if base_name(name) == column:
                return value
    return None
