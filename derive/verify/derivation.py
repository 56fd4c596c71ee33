"""Reading a multi-line derivation: its chain of equalities, each judged against the one before."""
from __future__ import annotations

import re

from ..claim import parse_claim, render, split_equals
from ..errors import DeriveError
from .limits import MAX_DERIVATION_LINES
from .judging import check_size, judge
from .symbols import target
from .verdict import Verdict


LINE_SKIP = re.compile(r"^\s*(\\begin\{|\\end\{|%|$)")


def verify_derivation(result, text: str, param: str | None = None) -> Verdict:
    """Every consecutive equality of a LaTeX chain; the first wrong line (1-based in the file)."""
    chain: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if LINE_SKIP.match(raw):
            continue
        line = re.sub(r"(?<!\\)%.*$", "", raw)                      # a comment, not \%
        line = re.sub(r"\\\\\s*$|\\nonumber|\\notag|\\(label|tag|text|mbox|intertext)\{[^}]*\}", " ", line)
        continues = bool(re.match(r"\s*&\s*\\q?quad", line))           # &\qquad ...: a broken line goes on
        line = re.sub(r"&\s*=", "=", line).strip().lstrip("&").strip()     # keep the & of a bmatrix
        line = re.sub(r"^\\\[|\\\]$|^\$\$|\$\$$", "", line).strip().rstrip(",.")
        if not re.sub(r"\\(q?quad|[,;!])|\s", "", line):
            continue
        if continues and len(split_equals(line)) == 1 and chain:
            chain[-1] = (chain[-1][0], chain[-1][1] + " " + line)
            continue
        for k, part in enumerate(split_equals(line)):
            if part.strip() or k == 0:
                chain.append((number, part.strip()))
    chain = [(n, p) for n, p in chain if p]
    if len(chain) > MAX_DERIVATION_LINES:
        raise DeriveError(f"derivation: {len(chain)} equalities is too long; at most {MAX_DERIVATION_LINES} are "
                          "checked (split it into parts)")
    if len(chain) < 2:
        raise DeriveError("derivation: no equality found; write lines such as "
                          "\\frac{\\partial L}{\\partial W^{2}} &= ... \\\\")
    terms = []
    for number, part in chain:
        try:
            terms.append((number, parse_claim(part)))
            check_size(terms[-1][1])
        except DeriveError as exc:
            return Verdict("unparseable", number, None, f"line {number}: {exc}")
    first = terms[0][1]
    if param:
        first = target(result, param)
    lines, wrong, previous = [], None, first
    verdict = None
    for number, term in terms[1:]:
        try:
            judged = judge(result, previous, term, anchor=first, diagnose=wrong is None)
            truth = judge(result, first, term, anchor=first, diagnose=False)
        except DeriveError as exc:
            return Verdict("unparseable", number, None, f"line {number}: {exc}", lines, terms=terms)
        lines.append({"line": number, "follows_from_previous": judged.verdict == "correct",
                      "correct": truth.verdict == "correct"})
        if wrong is None and judged.verdict != "correct":
            wrong, verdict = number, judged
        previous = term
    if wrong is None:
        return Verdict("correct", None, None, f"every one of the {len(terms) - 1} equalities holds", lines,
                       terms=terms)
    index = [n for n, _ in terms].index(wrong)
    later = [l["line"] for l in lines if l["line"] > wrong and l["follows_from_previous"]]
    again = [l["line"] for l in lines if l["line"] > wrong and l["correct"]]
    note = (f"; later lines that follow correctly from the one before: {later}" if later else "") + \
           (f"; later lines that are correct again: {again}" if again else "")
    sides = {"left": render(terms[index - 1][1]), "right": render(terms[index][1])}
    return Verdict(verdict.verdict, wrong, verdict.counterexample, f"line {wrong}: {verdict.diagnosis}{note}",
                   lines=lines, fix=verdict.fix, terms=terms, sides=sides,
                   fix_of=(terms[index - 1][1] if index > 1 or not param else first, first))
