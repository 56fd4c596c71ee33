"""`compare:` in a spec: the formulas of an existing text (last year's notes), each judged as
`derive verify` judges a claim and typeset beside derive's checked result, with the verdict, the
diagnosis and, when a single change makes it right, the corrected line."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import DeriveError


@dataclass(frozen=True)
class Compared:
    param: str
    entry: object        # the spec's Comparison: its source and note in each language
    lhs: str             # LaTeX of what the formula claims to give, in the document's notation
    written: str         # the formula as the text writes it, re-printed from derive's reading of it
    verdict: str         # correct | incorrect | shape_mismatch | unparseable
    diagnosis: str
    fix: str | None      # the corrected right side, when a single change was found
    derived: str | None  # derive's own result for the same parameter (its final equation's right side)


def _lhs(result, param: str, printer) -> str:
    from .algebra import MatPartial, Partial
    from .notation import parse_parameter

    name = parse_parameter(param)
    q = result.quantities
    if name is None:
        raise DeriveError(f"compare: {param!r} is not a parameter; this network's are {', '.join(result.parameters)}")
    if name.kind == "delta":
        layer = name.layer(printer.n)
        return printer.doprint(q.entry("delta", layer)[name.indices] if name.indices else q.matrix("delta", layer))
    if name.indices:
        base = q.entry(name.kind, name.label)
        return printer.doprint(Partial(q.loss, base[name.indices]))
    return printer.doprint(MatPartial(q.loss, q.matrix(name.kind, name.label)))


def judge_comparisons(result) -> tuple[Compared, ...]:
    from .notation import parse_parameter, profile
    from .printing import DerivePrinter
    from .verify import Meaning, read_claim, term_latex, verify_claim

    spec, q = result.spec, result.quantities
    notation = profile(spec.notation, spec.symbols)
    printer = DerivePrinter(q, notation)
    meaning = Meaning(result)
    out = []
    for item in spec.compare:
        verdict = verify_claim(result, item.param, item.claim)
        written = read_claim(item.claim, meaning)
        name = parse_parameter(item.param)
        derived = None
        if name is not None and not name.indices:
            topic = {"W": "weight", "b": "bias", "delta": "delta"}[name.kind]
            layer = name.layer(notation)
            level = "batch" if q.samples != 1 and topic != "delta" else "matrix"
            found = {d.key: d for d in result.derivations}.get(f"{topic}{layer}:{level}")
            derived = found.steps[-1].rhs if found is not None else None
        out.append(Compared(
            item.param, item, _lhs(result, item.param, printer), written or "",
            verdict.verdict, verdict.diagnosis,
            term_latex(verdict.fix, meaning) if verdict.fix is not None else None,
            printer.doprint(derived) if derived is not None else None))
    return tuple(out)
