"""What a check returns: rows (one per stage and case group) and whether they all passed."""
from dataclasses import asdict, dataclass, field

STATUSES = ("pass", "fail", "skip", "info")


@dataclass
class Row:
    """One line of the table. ``status``: pass, fail, skip (the stage could not run here; not a
    failure) or info (figures to read, nothing to pass). ``details``: lines shown under it."""
    stage: str              # oracle, ptx, sass, bench
    family: str
    version: str | None     # None: a family without versions
    name: str               # the case group, kernel or target the row is about
    status: str
    summary: str
    details: list = field(default_factory=list)
    seconds: float = 0.0

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"Row: status must be one of {', '.join(STATUSES)}, "
                             f"got {self.status!r}")


@dataclass
class Result:
    """The rows of one ``tilegrad check``; ``ok`` when none failed."""
    family: str
    versions: list
    quick: bool
    stages: list
    device: str
    rows: list = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)    # wall time of each stage run

    @property
    def ok(self):
        return not self.failures()

    def failures(self):
        return [r for r in self.rows if r.status == "fail"]

    def as_dict(self):
        return {"family": self.family, "versions": self.versions, "quick": self.quick,
                "stages": self.stages, "device": self.device, "ok": self.ok,
                "seconds": round(self.seconds, 2),
                "stage_seconds": {k: round(v, 2) for k, v in self.stage_seconds.items()},
                "rows": [asdict(r) for r in self.rows]}
