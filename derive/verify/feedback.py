"""The feedback document: the derivation as read, the first wrong line marked, the fix read back."""
from __future__ import annotations

import re

from ..claim import Term, parse_claim, split_equals
from ..errors import DeriveError
from .judging import judge
from .symbols import LATEX_NAMES, Meaning
from .verdict import Verdict

_GREEK = {"delta", "Delta", "Theta", "theta", "lambda", "sigma"}


def term_latex(t: Term, meaning: Meaning) -> str:
    """LaTeX for a parsed term, printed by us from the tree: no text of the user reaches TeX."""
    n = meaning.n
    if t.op == "symbol":
        base = t.name.removesuffix("_col0").removesuffix("_data")
        name = LATEX_NAMES.get(base)
        if name is None:
            name = ("\\" + base) if base in _GREEK else base if re.fullmatch(r"[A-Za-z]", base) \
                else r"\mathit{" + re.sub(r"[^A-Za-z]", "", base) + "}"
        if t.name.endswith("_data"):
            return name + r"_{\mathrm{data}}"
        sample = f"({t.sample})" if t.sample else ""
        if t.label is not None or sample:
            name += "^{" + (n.layer.replace("l", str(t.label)) if t.label is not None else "") + sample + "}"
        if t.name.endswith("_col0"):                 # Ng's bias column Theta_{.0}, or the entry Theta_{i0}
            return name + ("_{" + f"{t.indices[0]}0" + "}" if t.indices else r"_{\cdot 0}")
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
        upper = f"{t.value:g}" if t.value is not None else (t.indices[0] if t.indices else "")
        head = r"\sum_{%s=1}^{%s}" % (t.name, upper) if upper else r"\sum_{%s}" % t.name
        return f"{head} {_wrapped(t.args[0], meaning)}"
    if t.op == "iverson":
        return f"[{t.indices[0]} = {t.indices[1]}]"
    if t.op == "indicator":
        return f"[{term_latex(t.args[0], meaning)} > {t.value:g}]"
    if t.op == "matrix":
        rows = [" & ".join(term_latex(c, meaning) for c in r.args) for r in t.args]
        return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"
    if t.op == "partial" and t.args[0].op != "symbol":           # the operator form d/dx (...)
        return r"\frac{\partial}{\partial %s}\left(%s\right)" % (term_latex(t.args[1], meaning),
                                                                term_latex(t.args[0], meaning))
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
    if t.op == "neg":          # -(a b): the minus of the whole product, as the tree has it
        arg = t.args[0]
        atomic = arg.op in ("symbol", "number", "apply", "partial", "transpose", "power", "elementary", "matrix")
        return "-" + (term_latex(arg, meaning) if atomic else f"\\left({term_latex(arg, meaning)}\\right)")
    if t.op == "recip":
        return r"\frac{1}{%s}" % term_latex(t.args[0], meaning)
    if t.op == "diag":
        return r"\operatorname{diag}\left(%s\right)" % term_latex(t.args[0], meaning)
    if t.op == "mul" and t.args[1].op == "recip":
        return r"\frac{%s}{%s}" % (term_latex(t.args[0], meaning), term_latex(t.args[1].args[0], meaning))
    joiner = {"add": " + ", "sub": " - ", "mul": " ", "star": " * ", "hadamard": r" \odot ",
              "divide": r" \oslash "}[t.op]
    parts = []
    for k, a in enumerate(t.args):     # a chain of one associative operator needs no inner parentheses
        same = a.op == t.op and t.op in ("add", "hadamard", "mul") and k == 0
        keep = same or (t.op == "add" and a.op != "neg") or (t.op == "sub" and k == 0 and a.op != "neg")
        right_nested = k > 0 and a.op in ("mul", "star", "hadamard") and t.op in ("mul", "star", "hadamard")
        parts.append(f"\\left({term_latex(a, meaning)}\\right)" if right_nested else
                     term_latex(a, meaning) if keep else _wrapped(a, meaning))
    return joiner.join(parts)


def _wrapped(t: Term, meaning) -> str:
    """A factor printed so that it reads back as one: sums, products read entry-wise, a minus sign and
    a sum over an index (which would take in everything after it) are put in parentheses."""
    text = term_latex(t, meaning)
    wrap = t.op in ("add", "sub", "hadamard", "divide", "star", "neg", "sum")
    return f"\\left({text}\\right)" if wrap else text


def written_rows(result, verdict: Verdict) -> list[dict]:
    """A derivation's rows as read: each right side as LaTeX, with the left side it continues (on the
    first row of its equation), whether it holds, and the first wrong row marked."""
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
    return rows


def read_claim(text: str, meaning: Meaning) -> str | None:
    """A claim's right side as derive read it, re-printed as LaTeX; None when it does not parse."""
    try:
        return term_latex(parse_claim(split_equals(text)[-1]), meaning)
    except DeriveError:
        return None


def feedback_document(result, verdict: Verdict, param: str | None, lang: str = "en") -> str:
    from ..render import environment

    fix = term_latex(verdict.fix, Meaning(result)) if verdict.fix is not None else None
    text = environment().get_template("verify.tex.j2").render(
        lang=lang, rows=written_rows(result, verdict), verdict=verdict, fix=fix, spec=result.spec)
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
    if not fix_reads_back(result, printed[0], verdict):
        line = next(n for n, l in enumerate(text.splitlines(), 1) if printed[0] in l)
        raise PrintedLineError(f"feedback: the corrected line printed on line {line} does not read back as "
                               f"correct; nothing was written: {printed[0]}")


def fix_reads_back(result, printed: str, verdict: Verdict) -> bool:
    """Whether a corrected line, as printed (LaTeX), is read back by the claim grammar and judged
    correct against what it corrects: only such a line is shown to a student."""
    if verdict.fix_of is None:
        return False
    against, anchor = verdict.fix_of
    try:
        judged = judge(result, against, parse_claim(printed), anchor=anchor, diagnose=False)
    except DeriveError:
        return False
    return judged.verdict == "correct"


def printed_fix(result, verdict: Verdict, param: str | None = None) -> str | None:
    """The corrected line as LaTeX, when one was found and it reads back as correct: against what it
    corrects (a derivation's line), or as a claim about `param` (a claim's fix is the whole claim)."""
    if verdict.fix is None:
        return None
    tex = term_latex(verdict.fix, Meaning(result))
    if verdict.fix_of is not None:
        return tex if fix_reads_back(result, tex, verdict) else None
    if param is None:
        return None
    from .judging import verify_claim

    return tex if verify_claim(result, param, tex).verdict == "correct" else None
