"""Verify a hand derivation for a network with normalization, dropout, skips, recurrence, attention or
feature maps: a claimed gradient, or a derivation of several lines, read with the documents' own
reader (readback.py) and judged at random instances against central differences of the forward pass.

A claim is LaTeX as the documents print it (Unicode such as δ², Wᵀ, · is accepted too):

    \\frac{\\partial L}{\\partial W^{2}} = \\Delta^{2} \\left(A^{1}\\right)^{T}      (the left side may be left out)
    \\frac{\\partial L}{\\partial K^{1}_{cdpq}} = \\sum_{i=1}^{4} \\sum_{j=1}^{4} \\delta^{1}_{cij} x_{d,i+p-1,j+q-1}
"""
from __future__ import annotations

import re
from fractions import Fraction

import numpy as np

from ..claim import normalize as unicode_to_latex, split_equals
from ..errors import DeriveError
from ..readback import PrintedEquation
from ..verify.verdict import Verdict
from .readback import ENTRY_KINDS, MATRIX_KINDS, Finding, Spread, compare

TRIALS = 3
PARAMETER = re.compile(r"^(W|U|K|b|gamma|beta|WQ|WK|WV|delta)([0-9]+)$")
LATEX_OF = {"W": "W^{%d}", "U": "U^{%d}", "K": "K^{%d}", "b": "b^{%d}", "gamma": r"\gamma^{%d}",
            "beta": r"\beta^{%d}", "WQ": "W^{Q,%d}", "WK": "W^{K,%d}", "WV": "W^{V,%d}"}
LABELLED = sorted({*ENTRY_KINDS, *MATRIX_KINDS}, key=len, reverse=True)


def claim_text(text: str) -> str:
    """A user's LaTeX in the documents' spelling: ^T and ^\\top as ^{T}, W^2 as W^{2}, Unicode as LaTeX."""
    text = unicode_to_latex(text)
    text = re.sub(r"\^\s*(\{\s*(\\top|\\intercal|\\mathsf\{T\}|T)\s*\}|(\\top|\\intercal|T)(?![A-Za-z]))", "^{T}", text)
    bases = "|".join(re.escape(b) for b in LABELLED)
    text = re.sub(r"(?<![A-Za-z\\])(%s)\^([0-9])" % bases, r"\1^{\2}", text)
    text = re.sub(r"\\(mathrm|text)\{d\}", r"\\partial", text)
    return text.strip()


def _parameter_side(result, param: str) -> str:
    m = PARAMETER.match(param or "")
    if not m:
        raise DeriveError(f"--param {param!r}: accepted: a parameter of this network ("
                          f"{', '.join(result.parameters)}) or an error term such as delta2")
    kind, layer = m.group(1), int(m.group(2))
    if kind == "delta":
        if not 1 <= layer <= result.spec.depth:
            raise DeriveError(f"--param {param}: the network has layers 1 to {result.spec.depth}")
        if result.spec.map_shape(layer) is not None:
            raise DeriveError(f"--param {param}: layer {layer} is a feature map; write the claim entry by entry "
                              rf"with its left side, e.g. \delta^{{{layer}}}_{{cij}} = ...")
        return r"\Delta^{%d}" % layer
    if param not in result.parameters:
        raise DeriveError(f"--param {param}: no such parameter; this network's are {', '.join(result.parameters)}")
    if kind == "K" or (kind == "W" and result.spec.map_shape(layer - 1) is not None):
        raise DeriveError(f"--param {param}: a kernel or a weight reading a feature map has no matrix form; write "
                          r"the claim entry by entry with its left side, e.g. \frac{\partial L}{\partial "
                          f"{'K' if kind == 'K' else 'w'}^{{{layer}}}_{{cdpq}}}} = ...")
    return r"\frac{\partial L}{\partial %s}" % (LATEX_OF[kind] % layer)


def _instances(result):
    from .check import instance

    return [instance(result, seed) for seed in range(TRIALS)]


def verify_blocks_claim(result, param: str | None, text: str) -> Verdict:
    sides = split_equals(claim_text(text))
    if len(sides) > 2:
        return verify_blocks_derivation(result, text, param)
    lhs = sides[0].strip() if len(sides) == 2 else _parameter_side(result, param)
    rhs = sides[-1].strip()
    if not rhs:
        return Verdict("unparseable", diagnosis="the claim is empty")
    instances = _instances(result)
    found = compare(result, PrintedEquation(1, lhs, rhs), instances)
    verdict = _verdict(found, lhs, rhs, line=None)
    verdict.fix_tex = corrected(result, lhs, rhs, found, instances)
    return verdict


def verify_blocks_derivation(result, text: str, param: str | None = None) -> Verdict:
    """Lines 'lhs = rhs' (a line '= rhs' continues from the right side before it); the first line whose
    equality fails is the first wrong line. With param, the last right side must be dL/dparam."""
    lines = _lines(text)
    if not lines:
        return Verdict("unparseable", diagnosis="the derivation has no lines")
    instances = _instances(result)
    previous, start, checked = None, None, []
    for number, line in lines:
        sides = [s.strip() for s in split_equals(claim_text(line))]
        if sides[0] == "":
            if previous is None:
                return Verdict("unparseable", first_wrong_line=number,
                               diagnosis=f"line {number} starts with '=' but continues nothing")
            sides[0] = previous
        if len(sides) < 2:
            return Verdict("unparseable", first_wrong_line=number, diagnosis=f"line {number} has no '='")
        for lhs, rhs in zip(sides, sides[1:]):
            start = start if lhs == previous else lhs
            found = compare(result, PrintedEquation(number, lhs, rhs), instances,
                            start if lhs != start else None)
            checked.append({"line": number, "equation": f"{lhs} = {rhs}", "status": found.status})
            if found.status != "correct":
                verdict = _verdict(found, lhs, rhs, number)
                verdict.lines = checked
                verdict.fix_tex = corrected(result, lhs, rhs, found, instances, start if lhs != start else None)
                return verdict
            previous = rhs
    if param:
        target = _parameter_side(result, param)
        found = compare(result, PrintedEquation(lines[-1][0], target, previous), instances)
        checked.append({"line": lines[-1][0], "equation": f"{target} = {previous}", "status": found.status})
        if found.status != "correct":
            verdict = _verdict(found, target, previous, lines[-1][0], final=True)
            verdict.lines = checked
            return verdict
    return Verdict("correct", diagnosis=f"every one of {len(checked)} equalities holds at {TRIALS} random instances "
                                        "(central differences of the forward pass)", lines=checked)


def _verdict(found: Finding, lhs: str, rhs: str, line: int | None, final: bool = False) -> Verdict:
    where = f"line {line}: " if line is not None else ""
    if final:
        where += f"the last right side is not dL/d of the parameter asked for: "
    if found.status == "correct":
        return Verdict("correct", diagnosis=f"holds at {TRIALS} random instances (every derivative by central "
                                            "differences of the forward pass)")
    if found.status == "unreadable":
        hint = (" (claims for this network are read as LaTeX, as its document prints them, e.g. "
                r"\Delta^{2} (A^{1})^{T} or \sum_{s=1}^{m} \delta^{2}_{js} a^{1}_{ks})") \
            if found.message.startswith("cannot read") else ""
        return Verdict("unparseable", first_wrong_line=line, diagnosis=where + found.message + hint)
    if found.kind == "misfit":
        expected, claimed = _values(found.left), _values(found.right)
        if found.left is not None and claimed.shape == expected.T.shape and \
                np.allclose(claimed, expected.T, rtol=1e-5, atol=1e-7):
            return Verdict("shape_mismatch", first_wrong_line=line, diagnosis=where + found.message +
                           ": the claim is the transpose of the right value (the factors are in the wrong order, "
                           "or transposed)")
        hint = _misfit_hint(found.message)
        return Verdict("shape_mismatch", first_wrong_line=line, diagnosis=where + found.message + hint)
    if found.kind == "stray":
        return Verdict("incorrect", first_wrong_line=line, diagnosis=where + found.message)
    return Verdict("incorrect", first_wrong_line=line, counterexample=_counterexample(found),
                   diagnosis=where + _diagnosis(found, "the two sides differ" if line is not None and not final
                                                else "the claim differs from the true value"))


def corrected(result, lhs: str, rhs: str, found: Finding, instances, context: str | None = None) -> str | None:
    """The wrong right side changed in one of the ways hand derivations slip (transposed, negated, scaled,
    its last or first factor transposed, its two factors swapped), printed from its tree and shown only
    when judged correct like any claim."""
    from .readback import Node, parse_printed, to_latex

    if found.status != "wrong":
        return None
    try:
        tree = parse_printed(rhs)
    except DeriveError:
        return None
    candidates = [_transposed(tree), tree.args[0] if tree.op == "neg" else Node("neg", (tree,))]
    if tree.op == "mul":                  # a factor transposed or missing its transpose, or the two swapped
        left, right = tree.args
        candidates += [Node("mul", (left, _transposed(right))), Node("mul", (_transposed(left), right)),
                       Node("mul", (right, left))]
    ratio = _ratio(found)
    if ratio is not None and ratio not in (0, 1, -1):
        candidates.append(_scaled(tree, 1 / ratio))
    for candidate in candidates:
        tex = to_latex(candidate)
        if parse_printed(tex) == candidate and \
                compare(result, PrintedEquation(0, lhs, tex), instances, context).status == "correct":
            return tex
    return None


def _transposed(node):
    """node^T with the transpose taken inside: (A B)^T = B^T A^T, (A^T)^T = A, a number its own."""
    from .readback import Node

    if node.op == "transpose":
        return node.args[0]
    if node.op == "mul":
        return Node("mul", (_transposed(node.args[1]), _transposed(node.args[0])))
    if node.op in ("add", "sub", "hadamard"):
        return Node(node.op, tuple(_transposed(a) for a in node.args))
    if node.op in ("neg", "div") and (node.op == "neg" or _number(node.args[1]) is not None):
        return Node(node.op, (_transposed(node.args[0]),) + node.args[1:])
    if _number(node) is not None:
        return node
    return Node("transpose", (node,))


def _number(node) -> Fraction | None:
    if node.op == "number" and float(node.data).is_integer():
        return Fraction(int(node.data))
    if node.op == "div":
        top, bottom = _number(node.args[0]), _number(node.args[1])
        return top / bottom if top is not None and bottom else None
    return None


def _scaled(node, factor: Fraction):
    """factor · node, merged with a leading number of node (2 (1/2 A) is A)."""
    from .readback import Node

    if node.op == "neg":
        return _scaled(node.args[0], -factor)
    number, rest = _leading_number(node)
    factor *= number
    if factor == 1:
        return rest
    if factor == -1:
        return Node("neg", (rest,))
    size = abs(factor)
    scale = Node("number", data=float(size.numerator)) if size.denominator == 1 else \
        Node("div", (Node("number", data=float(size.numerator)), Node("number", data=float(size.denominator))))
    out = Node("mul", (scale, rest))
    return out if factor > 0 else Node("neg", (out,))


def _leading_number(node) -> tuple[Fraction, object]:
    """(the number a product starts with, the product without it): \\frac{1}{2} A B is (1/2, A B)."""
    from .readback import Node

    if node.op == "mul":
        head = _number(node.args[0])
        if head is not None:
            return head, node.args[1]
        number, rest = _leading_number(node.args[0])
        if number != 1:
            return number, Node("mul", (rest, node.args[1]))
    return Fraction(1), node


def _uniform_ratio(found: Finding) -> float | None:
    """claimed / expected when it is one number at every entry that tells (two at least: one number is
    a multiple of any other)."""
    if found.left is None or found.right is None:
        return None
    expected, claimed = _values(found.left), _values(found.right)
    if expected.shape != claimed.shape:
        return None
    nonzero = np.abs(expected) > max(1e-7, 1e-3 * float(np.abs(expected).max()))
    if np.count_nonzero(nonzero) < 2:
        return None
    ratios = claimed[nonzero] / expected[nonzero]
    ratio = float(np.median(ratios))
    return ratio if np.allclose(ratios, ratio, rtol=1e-4) and abs(ratio) > 1e-9 else None


def _ratio(found: Finding) -> Fraction | None:
    """The uniform ratio as a simple fraction (2.00001 from central differences is 2), or None."""
    ratio = _uniform_ratio(found)
    if ratio is None:
        return None
    simple = Fraction(ratio).limit_denominator(12)
    return simple if abs(float(simple) - ratio) <= 1e-4 * abs(ratio) else None


def _misfit_hint(message: str) -> str:
    if "a product of" in message:
        return " (is a transpose missing, or are two factors in the wrong order?)"
    if "entry by entry" in message:
        return " (a bias or a mean needs its row of ones, b 1^T, to spread over the columns)"
    if "lies outside" in message:
        return " (a sum runs too far, or an index is off by one)"
    if "runs over" in message:
        return " (are two indices swapped?)"
    return ""


def _values(v) -> np.ndarray:
    return np.asarray(v.value if isinstance(v, Spread) else v, dtype=float)


def _diagnosis(found: Finding, base: str) -> str:
    """What the claimed value is, in words: the transpose, the negative, a multiple of the right one."""
    expected, claimed = _values(found.left), _values(found.right)
    at = ", ".join(f"{k} = {v}" for k, v in (found.where or {}).items())
    base += f" at {at}" if at else ""
    if expected.shape == claimed.shape and expected.size > 1:
        if expected.shape == expected.T.shape and np.allclose(claimed, expected.T, rtol=1e-5, atol=1e-7) \
                and not np.allclose(claimed, expected, rtol=1e-5, atol=1e-7):
            return base + ": it is the transpose of the right value (two indices or factors are swapped)"
    if np.allclose(claimed, -expected, rtol=1e-5, atol=1e-7) and np.any(np.abs(expected) > 1e-7):
        return base + ": it has the wrong sign"
    if expected.shape != claimed.shape:
        return base
    ratio = _uniform_ratio(found)
    if ratio is not None:
        simple = _ratio(found)
        shown = str(simple) if simple is not None else f"{ratio:.6g}"
        return base + f": it is {shown} times the right value (a factor such as 1/m is missing or extra)"
    if expected.size > 1:
        worst = np.unravel_index(int(np.argmax(np.abs(expected - claimed))), expected.shape)
        entry = ", ".join(str(int(i) + 1) for i in worst)
        return base + f" (most at entry ({entry}): {expected[worst]:.6g} against {claimed[worst]:.6g})"
    return base + f": {float(expected.reshape(-1)[0]):.6g} against {float(claimed.reshape(-1)[0]):.6g}"


def _counterexample(found: Finding) -> dict:
    expected, claimed = _values(found.left), _values(found.right)
    inst = found.instance
    out = {"sizes": [int(n) for n in inst.sizes] if inst is not None else None,
           "samples": int(inst.m) if inst is not None else None}
    if found.where:
        out["at"] = dict(found.where)
    if expected.size == 1 and claimed.size == 1:
        out.update(expected=float(expected.reshape(())), claimed=float(claimed.reshape(())))
    elif expected.shape == claimed.shape and expected.size:
        worst = np.unravel_index(int(np.argmax(np.abs(expected - claimed))), expected.shape)
        out.update(worst_entry=[int(i) + 1 for i in worst], expected=float(expected[worst]),
                   claimed=float(claimed[worst]))
    return out


def feedback_blocks(result, verdict: Verdict, text: str, lang: str = "en") -> str | None:
    """The feedback document (the derivation as read, the first wrong line in red), every line printed
    from its read tree, never from the student's text, and read back to the same tree; None when a line
    could not be read (the verdict says which)."""
    from ..errors import PrintedLineError
    from ..render import environment
    from .readback import parse_printed, to_latex

    if verdict.verdict == "unparseable":
        return None
    rows = []
    for number, line in _lines(text):
        printed = []
        for side in split_equals(claim_text(line)):
            if not side.strip():
                printed.append("")
                continue
            tree = parse_printed(side.strip())
            tex = to_latex(tree)
            if parse_printed(tex) != tree:
                raise PrintedLineError(f"feedback: line {number} does not read back as written; nothing was written")
            printed.append(tex)
        wrong = verdict.first_wrong_line == number
        before = verdict.first_wrong_line is None or number < verdict.first_wrong_line
        rows.append({"line": number, "lhs": printed[0], "tex": " = ".join(printed[1:]), "wrong": wrong,
                     "correct": before or wrong})
    fix = verdict.fix_tex
    if fix is not None and to_latex(parse_printed(fix)) != fix:        # printed from a tree, and read back to it
        raise PrintedLineError("feedback: the corrected line does not read back as printed; nothing was written")
    return environment().get_template("verify.tex.j2").render(lang=lang, rows=rows, verdict=verdict, fix=fix,
                                                               spec=result.spec)


def _lines(text: str):
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.strip().startswith("%")]
