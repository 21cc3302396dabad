"""``tilegrad check``: the local grader of one CUDA kernel family, for a student who wrote a new
version and wants to know, without a GPU, whether it is right and what the compiler makes of it.

    from tilegrad import grading
    result = grading.run("matmul", "v2", quick=True, stages="oracle")
    result.ok, [(r.name, r.status, r.summary) for r in result.rows]

Modules: ``families`` (the families, their versions, each version's kernels), ``cases`` (the
oracle cases of each family), ``oracle``, ``compiled`` and ``benchmark`` (the stages, each
run in a process of its own), ``stages`` (``run``), ``result`` and ``table`` (the rows and
how they print), ``command`` (the subcommand), ``device`` (is there a GPU).
"""
from .families import UnknownFamilyError
from .result import Result, Row
from .stages import STAGES, run

__all__ = ["run", "Result", "Row", "STAGES", "UnknownFamilyError"]
