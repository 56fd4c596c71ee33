"""The feedback document: the derivation as read, the first wrong line marked, the fix read back."""
from __future__ import annotations

import re

from ..claim import Term, parse_claim
from ..errors import DeriveError
from .judging import judge
from .symbols import LATEX_NAMES, Meaning
from .verdict import Verdict

_GREEK = {"delta", "Delta", "Theta", "theta", "lambda", "sigma"}


def term_latex(t: Term, meaning: Meaning) -> str:
    """LaTeX for a parsed term, printed by us from the tree: no text of the user reaches TeX."""
    n = meaning.n
    if t.op == "symbol":
        name = LATEX_NAMES.get(t.name)
        if name is None:
            name = ("\\" + t.name) if t.name in _GREEK else t.name if re.fullmatch(r"[A-Za-z]", t.name) \
                else r"\mathrm{" + re.sub(r"[^A-Za-z]", "", t.name) + "}"
        if t.label is not None:
            name += "^{" + n.layer.replace("l", str(t.label)) + "}"
        if t.indices:
            name += "_{" + ("".join(map(str, t.indices)) if all(len(str(i)) == 1 for i in t.indices)
                            else ",".join(map(str, t.indices))) + "}"
        return name
    if t.op == "number":
        return f"{t.value:g}"
    if t.op == "power":
        return _wrapped(t.args[0], meaning) + "^{" + f"{t.value:g}" + "}"
    if t.op == "elementary":
        return r"\%s\left(%s\right)" % (t.name, term_latex(t.args[0], meaning))
    if t.op == "sum":
        return r"\sum_{%s} %s" % (t.name, _wrapped(t.args[0], meaning))
    if t.op == "matrix":
        rows = [" & ".join(term_latex(c, meaning) for c in r.args) for r in t.args]
        return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"
    if t.op == "partial":
        return r"\frac{\partial %s}{\partial %s}" % (term_latex(t.args[0], meaning), term_latex(t.args[1], meaning))
    if t.op == "apply":
        fn = {"sigmoid": r"\sigma", "tanh": r"\tanh", "relu": r"\operatorname{ReLU}", "g": "g", "f": "f",
              "softplus": r"\operatorname{softplus}", "leaky_relu": r"\operatorname{LReLU}",
              "identity": r"\operatorname{id}", "softmax": r"\operatorname{softmax}"}.get(t.name, "f")
        return f"{fn}{chr(39) if t.prime else ''}({term_latex(t.args[0], meaning)})"
    if t.op == "transpose":
        inner = term_latex(t.args[0], meaning)
        wrap = t.args[0].op != "symbol" or t.args[0].label is not None
        return (f"\\left({inner}\\right)" if wrap else inner) + "^{" + n.transpose + "}"
    if t.op == "neg":
        return "-" + _wrapped(t.args[0], meaning)
    if t.op == "recip":
        return r"\frac{1}{%s}" % term_latex(t.args[0], meaning)
    if t.op == "diag":
        return r"\operatorname{diag}\left(%s\right)" % term_latex(t.args[0], meaning)
    if t.op == "mul" and t.args[1].op == "recip":
        return r"\frac{%s}{%s}" % (term_latex(t.args[0], meaning), term_latex(t.args[1].args[0], meaning))
    joiner = {"add": " + ", "sub": " - ", "mul": " ", "hadamard": r" \odot ", "divide": r" \oslash "}[t.op]
    parts = []
    for a in t.args:           # a chain of one associative operator needs no inner parentheses
        same = a.op == t.op and t.op in ("add", "hadamard", "mul")
        parts.append(term_latex(a, meaning) if same or t.op == "add" else _wrapped(a, meaning))
    return joiner.join(parts)


def _wrapped(t: Term, meaning) -> str:
    text = term_latex(t, meaning)
    return f"\\left({text}\\right)" if t.op in ("add", "sub", "hadamard", "divide") else text


def feedback_document(result, verdict: Verdict, param: str | None, lang: str = "en") -> str:
    from ..render import environment

    meaning = Meaning(result)
    rows, lhs, marked = [], None, False
    for n, t, starts in verdict.terms:
        if starts:                    # the left side of the equation the next rows continue
            lhs = term_latex(t, meaning)
            continue
        wrong = n == verdict.first_wrong_line and not marked
        marked = marked or wrong
        rows.append({"line": n, "tex": term_latex(t, meaning), "lhs": lhs, "wrong": wrong,
                     "correct": next((l["correct"] for l in verdict.lines if l["line"] == n), True)})
        lhs = None
    fix = term_latex(verdict.fix, meaning) if verdict.fix is not None else None
    text = environment().get_template("verify.tex.j2").render(
        lang=lang, rows=rows, verdict=verdict, fix=fix, spec=result.spec)
    _require_fix_reads_back(result, text, verdict)
    return text


FIX_MARK = re.compile(r"\\text\{(?:should be|应为) \} (.*?) && \\text\{")


def _require_fix_reads_back(result, text: str, verdict: Verdict) -> None:
    """The corrected line the document prints is read back from it and judged: a fix that does not
    read back as equal to what it corrects is never handed to a student."""
    from ..errors import PrintedLineError

    printed = FIX_MARK.findall(text)
    if verdict.fix is None or verdict.fix_of is None:
        if printed:
            raise PrintedLineError("feedback: a corrected line is printed where none was found")
        return
    if len(printed) != 1:
        raise PrintedLineError(f"feedback: {len(printed)} corrected lines printed, expected 1")
    against, anchor = verdict.fix_of
    try:
        judged = judge(result, against, parse_claim(printed[0]), anchor=anchor, diagnose=False)
    except DeriveError as exc:
        judged = Verdict("unparseable", diagnosis=str(exc))
    if judged.verdict != "correct":
        line = next(n for n, l in enumerate(text.splitlines(), 1) if printed[0] in l)
        raise PrintedLineError(f"feedback: the corrected line printed on line {line} does not read back as "
                               f"correct ({judged.verdict}: {judged.diagnosis}); nothing was written: {printed[0]}")
