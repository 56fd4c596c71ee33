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


def read_chain(text: str) -> list[tuple[int, str, bool]]:
    r"""The equalities of a LaTeX block as (file line, side, starts an equation). A line with a left side
    of its own (X &= Y) starts an equation; a line that begins with = (&= Y) goes on from the right
    side before it; &\qquad lines join a right side broken over lines."""
    chain: list[tuple[int, str, bool]] = []
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
        parts = split_equals(line)
        if continues and len(parts) == 1 and chain:
            chain[-1] = (chain[-1][0], chain[-1][1] + " " + line, chain[-1][2])
            continue
        for k, part in enumerate(parts):
            if part.strip():
                chain.append((number, part.strip(), k == 0))
    return chain


def verify_derivation(result, text: str, param: str | None = None) -> Verdict:
    """Every equality of a LaTeX chain, each right side against the one before it; the first wrong
    line (1-based in the file). Each line with its own left side is an equation of its own (a side
    equation such as delta^2 = ..., or the quantity restated); with --param the first left side is
    the parameter's gradient."""
    chain = read_chain(text)
    if len(chain) > MAX_DERIVATION_LINES:
        raise DeriveError(f"derivation: {len(chain)} equalities is too long; at most {MAX_DERIVATION_LINES} are "
                          "checked (split it into parts)")
    if len(chain) < 2 or not chain[0][2]:
        raise DeriveError("derivation: no equality found; write lines such as "
                          "\\frac{\\partial L}{\\partial W^{2}} &= ... \\\\")
    terms = []
    for number, part, starts in chain:
        try:
            terms.append((number, parse_claim(part), starts))
            check_size(terms[-1][1])
        except DeriveError as exc:
            return Verdict("unparseable", number, None, f"line {number}: {exc}")
    if param:
        terms[0] = (terms[0][0], target(result, param), True)
    lines, wrong, verdict, fix_of, readings = [], None, None, None, []
    head = previous = None
    for number, term, starts in terms:
        if starts:                     # a new equation: its left side is what the lines after it equal
            head = previous = term
            continue
        try:
            judged = judge(result, previous, term, anchor=head, diagnose=wrong is None)
            truth = judge(result, head, term, anchor=head, diagnose=False) if previous is not head else judged
        except DeriveError as exc:
            return Verdict("unparseable", number, None, f"line {number}: {exc}", lines, terms=terms)
        readings += [f"line {number}: {r}" for r in judged.readings if f"line {number}: {r}" not in readings]
        lines.append({"line": number, "follows_from_previous": judged.verdict == "correct",
                      "correct": truth.verdict == "correct"})
        if wrong is None and judged.verdict != "correct":
            wrong, verdict, fix_of = number, judged, (previous, head)
            sides = {"left": render(previous), "right": render(term)}
        previous = term
    if not lines:
        raise DeriveError("derivation: no equality found; every line has a left side and nothing follows it")
    if wrong is None:
        return Verdict("correct", None, None, f"every one of the {len(lines)} equalities holds", lines,
                       terms=terms, readings=readings)
    later = [l["line"] for l in lines if l["line"] > wrong and l["follows_from_previous"]]
    again = [l["line"] for l in lines if l["line"] > wrong and l["correct"]]
    note = (f"; later lines that follow correctly from the one before: {later}" if later else "") + \
           (f"; later lines that are correct again: {again}" if again else "")
    return Verdict(verdict.verdict, wrong, verdict.counterexample, f"line {wrong}: {verdict.diagnosis}{note}",
                   lines=lines, fix=verdict.fix, terms=terms, sides=sides, fix_of=fix_of, readings=readings)
