"""The check's results as a plain-text table, and as JSON.

One line per row: stage, version, what it is about, PASS/FAIL/skip/info and a summary; under a
failing row its details (the failing cases, named in full, with the first mismatch), under the
others only when ``verbose``.
"""
import json

MARKS = {"pass": "PASS", "fail": "FAIL", "skip": "skip", "info": "info"}


def render(result, verbose=False):
    """The table of ``result`` (a ``Result``) with a closing line saying whether it passed."""
    head = ("stage", "version", "what", "status", "summary")
    lines = [(r.stage, r.version or "-", r.name, MARKS[r.status], r.summary) for r in result.rows]
    widths = [max([len(h)] + [len(str(line[i])) for line in lines]) for i, h in
              enumerate(head[:4])]

    def fmt(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells[:4], widths)) + "  " + cells[4]

    out = [f"tilegrad check {result.family} ({', '.join(map(str, result.versions))}; "
           f"{result.device}{'; quick' if result.quick else ''})", "", fmt(head),
           fmt(["-" * w for w in widths] + ["-" * 7])]
    for row, cells in zip(result.rows, lines):
        out.append(fmt(cells))
        if row.status == "fail" or verbose:
            out += [" " * 4 + d for d in row.details]
    failed = result.failures()
    counts = {s: sum(r.status == s for r in result.rows) for s in MARKS}
    stages = "; ".join(f"{k} {v:.1f} s" for k, v in result.stage_seconds.items())
    out += ["", f"{'FAILED' if failed else 'passed'}: {counts['pass']} passed, "
                f"{counts['fail']} failed, {counts['skip']} skipped, {counts['info']} info "
                f"({result.seconds:.1f} s{': ' + stages if stages else ''})"]
    return "\n".join(out)


def write_json(result, path):
    with open(path, "w") as f:
        json.dump(result.as_dict(), f, indent=1)
        f.write("\n")
