"""What verify answers: a verdict, and why."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..claim import Term


class ShapeError(Exception):
    pass


@dataclass
class Verdict:
    verdict: str                          # correct | incorrect | shape_mismatch | unparseable
    first_wrong_line: int | None = None
    counterexample: dict | None = None
    diagnosis: str = ""
    lines: list = field(default_factory=list)
    fix: Term | None = None                            # the changed claim that is right, when one was found
    sides: dict | None = None                          # a derivation's wrong equality: both sides
    terms: list = field(default_factory=list)          # (file line, parsed term, starts an equation)
    fix_of: tuple | None = None                        # (what the fix equals, the anchor of its index letters)
    readings: list = field(default_factory=list)       # how ambiguous forms (*, a 1x1 factor) were read
    fix_tex: str | None = None                         # a block network's corrected line, as LaTeX, judged correct

    @property
    def explanation(self) -> str:
        """The diagnosis, with the readings chosen for ambiguous forms."""
        if not self.readings:
            return self.diagnosis
        return self.diagnosis + "; read: " + "; ".join(self.readings)

    def to_json(self) -> dict:
        out = {"verdict": self.verdict, "first_wrong_line": self.first_wrong_line,
               "counterexample": self.counterexample, "diagnosis": self.explanation}
        if self.readings:
            out["readings"] = self.readings
        if self.fix_tex:
            out["fix"] = self.fix_tex
        if self.lines:
            out["lines"] = self.lines
        if self.sides:
            out["sides"] = self.sides
        return out

    @property
    def exit_code(self) -> int:
        return {"correct": 0, "incorrect": 1, "shape_mismatch": 1}.get(self.verdict, 2)
