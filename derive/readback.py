"""What a document prints is what was checked: every displayed equation is read back from the
emitted LaTeX by derive's own claim grammar, in the document's notation, and judged at random
numeric instances (several concrete sizes where sizes are symbolic).

An equation is judged as the notation defines its symbols, never as the printer meant them: a
printer that swaps two indices or drops a transpose prints a line that reads back wrong. Symbols
of one sample (x, a^l, delta^l, L) are read at one sample of the instance, with L that sample's
loss, as the documents' "for one sample" says; an equation with a batch symbol (X, A^l, Delta^l,
m, L^{(s)}, the accumulator) is read at the whole batch, with L the loss of the batch.
"""
from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, replace

import numpy as np

from .claim import Term, parse_claim, render
from .errors import DeriveError

TRIALS = 3                  # instances per equation: the first three seeds (sizes vary with the seed)
MAX_POINTS = 12             # index combinations per equation and instance
RTOL, ATOL = 1e-6, 1e-9     # as the step checks
MAX_SEEDS = 12             # instances tried in all when both sides are 0 at the first ones
PRINTED_SCALE = 40          # printed lines may be this many times a user's claim (written-out entries)


@dataclass(frozen=True)
class PrintedEquation:
    line: int               # the .tex line of its first row (1-based)
    lhs: str
    rhs: str
    general: tuple[int, ...] = ()   # a line about the general layer l: the values of l it is stated for

    @property
    def text(self) -> str:
        return f"{self.lhs} = {self.rhs}"


@dataclass(frozen=True)
class Judgement:
    equation: PrintedEquation
    status: str             # correct | wrong | unreadable
    message: str = ""


@dataclass(frozen=True)
class ReadbackReport:
    judgements: tuple[Judgement, ...]

    @property
    def printed(self) -> int:
        return len(self.judgements)

    @property
    def read_back(self) -> int:
        return sum(j.status != "unreadable" for j in self.judgements)

    @property
    def correct(self) -> int:
        return sum(j.status == "correct" for j in self.judgements)

    @property
    def failures(self) -> tuple[Judgement, ...]:
        return tuple(j for j in self.judgements if j.status != "correct")

    @property
    def passed(self) -> bool:
        return not self.failures and self.printed > 0

    def to_json(self) -> dict:
        return {"printed": self.printed, "read_back": self.read_back, "correct": self.correct,
                "failures": [{"line": j.equation.line, "equation": j.equation.text, "status": j.status,
                              "message": j.message} for j in self.failures]}

    def summary(self) -> str:
        return f"{self.printed} equations printed, {self.read_back} read back, {self.correct} correct"


# ------------------------------------------------------------------------- extraction

def _skip_braced(text: str, start: int) -> int:
    """The index just past the {...} group that opens at text[start]."""
    depth = 0
    for k in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return k + 1
    raise DeriveError("read-back: unbalanced braces in the document")


def _blank_commands(text: str, command: str) -> str:
    """\\intertext{...} replaced by spaces (newlines kept, so offsets keep their line numbers)."""
    out, i = [], 0
    while (j := text.find(command + "{", i)) >= 0:
        end = _skip_braced(text, j + len(command))
        out.append(text[i:j] + re.sub(r"[^\n]", " ", text[j:end]))
        i = end
    return "".join(out) + text[i:]


GENERAL_MARK = re.compile(r"%\s*derive-general:\s*l\s*=\s*([0-9][0-9, ]*)\s*$")


def general_mark(values) -> str:
    """The comment before a display about the general layer l: the readback judges it at these l."""
    return "% derive-general: l = " + ", ".join(str(v) for v in values)


def _general_values(tex: str, start: int) -> tuple[int, ...]:
    """The values of l named by a derive-general comment just before a display (or a boxed result)."""
    before = tex[:start].rstrip()
    before = before.removesuffix("\\[").removesuffix("\\begin{equation*}").rstrip()
    last = before[before.rfind("\n") + 1:]
    mark = GENERAL_MARK.search(last)
    return tuple(int(v) for v in re.findall(r"[0-9]+", mark.group(1))) if mark else ()


def _rows(body: str) -> list[str]:
    """An aligned display's rows and their separators: split at \\\\ outside any inner environment
    (a written-out matrix has rows of its own)."""
    out, depth, start = [], 0, 0
    for match in re.finditer(r"\\begin\{|\\end\{|\\\\", body):
        token = match.group()
        if token == "\\begin{":
            depth += 1
        elif token == "\\end{":
            depth -= 1
        elif depth == 0:
            out += [body[start:match.start()], token]
            start = match.end()
    return out + [body[start:]]


def printed_equations(tex: str) -> list[PrintedEquation]:
    """Every displayed equation of a document: align* rows and \\[ aligned \\] displays (a row '&= rhs'
    continues from the right side before it, across displays in the flow form; a row '&\\qquad ...'
    continues a broken right side) and boxed results."""
    from .claim import split_equals

    out: list[PrintedEquation] = []
    line_of = lambda offset: tex.count("\n", 0, offset) + 1
    carried = None      # flow form: a display that starts '&= ...' continues the display before it
    for block in re.finditer(r"\\begin\{align\*\}(.*?)\\end\{align\*\}|\\\[\s*\\begin\{aligned\}(.*?)"
                             r"\\end\{aligned\}\s*\\\]", tex, re.S):
        group = 1 if block.group(1) is not None else 2
        general = _general_values(tex, block.start())
        body = _blank_commands(_blank_commands(block.group(group), r"\intertext"), r"\stepnote")
        rows, offset = [], block.start(group)
        for part in _rows(body):
            if part != "\\\\":
                for side in re.split(r"&\s*\\also\b", part):       # a second equation on the line
                    rows.append((offset + len(part) - len(part.lstrip()), side.strip()))
            offset += len(part)
        previous, pending = (carried if group == 2 else None), None
        for start, row in rows:
            if not row:
                continue
            if row.startswith(r"&\qquad"):
                if pending is None:
                    raise DeriveError(f"read-back: line {line_of(start)} continues no equation")
                pending = replace(pending, rhs=pending.rhs + " " + row.removeprefix(r"&\qquad").strip())
                continue
            if pending is not None:
                out.append(pending)
                previous = pending.rhs
            lhs, sep, rhs = row.partition("&=")
            if not sep:
                raise DeriveError(f"read-back: line {line_of(start)} is not an equation: {row[:80]}")
            lhs = lhs.strip() or previous
            if lhs is None:
                raise DeriveError(f"read-back: line {line_of(start)} continues no equation")
            pending = PrintedEquation(line_of(start), lhs, rhs.strip(), general)
        if pending is not None:
            out.append(pending)
            carried = pending.rhs
    for box in re.finditer(r"\\boxed\{", tex):
        end = _skip_braced(tex, box.end() - 1)
        lhs, sep, rhs = tex[box.end():end - 1].partition(" = ")
        if not sep:
            raise DeriveError(f"read-back: the boxed result on line {line_of(box.start())} is not an equation")
        out.append(PrintedEquation(line_of(box.start()), lhs.strip(), rhs.strip(), _general_values(tex, box.start())))
    for inline in re.finditer(r"\\\((.*?)\\\)", tex, re.S):
        # \( ... \) marks an equation in a sentence that states a fact about this network (the
        # prose's schematic identities, such as sigma' = sigma (1 - sigma) in z, use $ ... $)
        sides = split_equals(inline.group(1))
        if len(sides) < 2:
            raise DeriveError(f"read-back: the inline equation on line {line_of(inline.start())} has no '='")
        for left, right in zip(sides, sides[1:]):
            out.append(PrintedEquation(line_of(inline.start()), left.strip(), right.strip()))
    return sorted(out, key=lambda e: e.line)


def _letter_ranges(t: Term, meaning, ev, letters: list[str]) -> dict[str, int]:
    """How far each free index letter runs, from a symbol that carries it (sizes of the instance)."""
    from .verify import ShapeError, subterms

    ranges: dict[str, int] = {}
    seen: dict[str, tuple[int, str]] = {}

    def note(letter: str, size: int, where: Term) -> None:
        """A free index runs over one range: w_{kj} with k over 1..1 beside a_k over 1..4 is a misprint."""
        if letter in seen and seen[letter][0] != size:
            raise ShapeError(f"index {letter} runs over 1..{seen[letter][0]} in {seen[letter][1]} but over "
                             f"1..{size} in {render(where)}")
        seen.setdefault(letter, (size, render(where)))
        ranges.setdefault(letter, size)

    for _, s in subterms(t):
        if s.sample in letters:
            ranges.setdefault(s.sample, ev.inst.samples)
        if s.op != "symbol" or not any(i in letters for i in s.indices):
            continue
        if meaning.is_loss(s) or s.name == "m":
            continue
        indices = s.indices
        sym, _ = meaning.matrix(replace(s, indices=()))
        value = np.asarray(ev(sym))
        atom = meaning.q.atom(sym.name)
        for position, letter in enumerate(indices):
            if letter not in letters:
                continue
            if atom.kind == "W":
                to_n, from_n = value.shape if meaning.q.layout == "column" else value.shape[::-1]
                first, second = (to_n, from_n) if meaning.q.index_order == "to_from" else (from_n, to_n)
                note(letter, (first, second)[position], s)
            elif atom.batch:
                note(letter, value.shape[position], s)
            else:
                note(letter, value.size, s)
    return ranges


def _points(ranges: dict[str, int], rng) -> list[dict[str, int]]:
    names = sorted(ranges)
    combos = list(itertools.product(*(range(1, ranges[n] + 1) for n in names)))
    if len(combos) > MAX_POINTS:
        combos = [combos[i] for i in sorted(rng.choice(len(combos), size=MAX_POINTS, replace=False))]
    return [dict(zip(names, c)) for c in combos]


def _close(a, b) -> tuple[bool, float]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == b.size == 1:
        a, b = a.reshape(()), b.reshape(())
    if a.shape != b.shape:
        return False, float("inf")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False, float("nan")
    excess = np.abs(a - b) / (ATOL + RTOL * np.maximum(np.abs(a), np.abs(b)))
    worst = float(np.max(excess)) if excess.size else 0.0
    return worst <= 1.0, worst


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Term:
    """A chain prints each right side twice (as the next row's left side): read it once."""
    return parse_claim(text, scale=PRINTED_SCALE)


def general_instances(result, value: int) -> list[tuple[str, str]]:
    """How each quantity of the general layer l prints, and how it prints at l = value (longest first):
    a line about layer l is read at each of its layers as a reader would, by putting the number in."""
    from .algebra import GENERAL, is_general
    from .notation import profile
    from .printing import DerivePrinter

    q = result.quantities
    printer = DerivePrinter(q, profile(q.spec.notation, q.spec.symbols))
    pairs = {}
    for atom in list(q.atoms.values()):
        if atom.layer is None or not is_general(atom.layer):
            continue
        layer = int(atom.layer.subs(GENERAL, value))
        if 0 <= layer <= q.depth:
            for entry in (True, False):
                pairs[printer._name(atom.kind, atom.layer, atom.batch, entry)] = \
                    printer._name(atom.kind, layer, atom.batch, entry)
    for symbol, layer in q.general_sizes.items():
        at = int(layer.subs(GENERAL, value))
        if 0 <= at <= q.depth:
            pairs[printer.doprint(symbol)] = printer.doprint(q.sizes[at])
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))


def instantiate_text(text: str, pairs: list[tuple[str, str]]) -> str:
    marks = {}
    for n, (general, concrete) in enumerate(pairs):       # placeholders: a replacement is never replaced
        text = text.replace(general, f"\x00{n}\x00")
        marks[f"\x00{n}\x00"] = concrete
    for mark, concrete in marks.items():
        text = text.replace(mark, concrete)
    return text


def judge_equation(result, eq: PrintedEquation, meaning=None, instances=None) -> Judgement:
    """Judged at random numeric instances; a line about the general layer l at each value of l it states."""
    if eq.general:
        for value in eq.general:
            pairs = general_instances(result, value)
            at = replace(eq, lhs=instantiate_text(eq.lhs, pairs), rhs=instantiate_text(eq.rhs, pairs), general=())
            judged = _judge(result, at, meaning, instances)
            if judged.status != "correct":
                return Judgement(eq, judged.status, f"at l = {value} ({at.text}): {judged.message}")
        return Judgement(eq, "correct")
    return _judge(result, eq, meaning, instances)


def _judge(result, eq: PrintedEquation, meaning=None, instances=None) -> Judgement:
    from .oracle import make_instance
    from .evaluate import Evaluator
    from .verify import Meaning, ShapeError, free_letters, value_of

    meaning = meaning or Meaning(result)
    try:
        lhs, rhs = (meaning.normalize(_parse(side)) for side in (eq.lhs, eq.rhs))
    except DeriveError as exc:
        return Judgement(eq, "unreadable", str(exc).removeprefix("claim: "))
    stray = [x for x in free_letters(rhs) if x not in free_letters(lhs)]
    if stray:       # y = f(z_k) says nothing about which k; true at most by accident of a size 1
        return Judgement(eq, "wrong", f"index {stray[0]} is free on the right side but not on the left")
    mixed = meaning.mixed_symbol(Term("sub", (lhs, rhs)))
    if mixed is not None:
        from .verify import mixed_message

        return Judgement(eq, "unreadable", mixed_message(mixed, meaning))
    batch = meaning.uses_batch(lhs) or meaning.uses_batch(rhs)
    whole = Term("sub", (lhs, rhs))
    letters = free_letters(whole)
    rng = np.random.default_rng(0)
    instances = list(instances or [make_instance(result.quantities, seed) for seed in range(TRIALS)])
    compared, telling, extra = 0, 0, TRIALS
    while instances:
        inst = instances.pop(0)
        view = inst if batch or inst.samples == 1 else inst.sample_view(0)
        ev = Evaluator(view)
        try:
            ranges = _letter_ranges(whole, meaning, ev, letters)
            unranged = [x for x in letters if x not in ranges]
            if unranged:
                return Judgement(eq, "unreadable", f"index {unranged[0]} is free but no symbol gives its range")
            for env in _points(ranges, rng):
                with np.errstate(all="ignore"):
                    left = value_of(lhs, meaning, Evaluator(view), view.samples, env)
                    right = value_of(rhs, meaning, Evaluator(view), view.samples, env)
                ok, worst = _close(left, right)
                compared += 1
                telling += bool(np.any(np.asarray(left, dtype=float)) or np.any(np.asarray(right, dtype=float)))
                if not ok:
                    where = ", ".join(f"{k} = {v}" for k, v in env.items())
                    return Judgement(eq, "wrong", f"the two sides differ at sizes {list(view.sizes)}"
                                     + (f", {where}" if where else "") + f": {_show(left)} against {_show(right)}")
        except (DeriveError, ShapeError) as exc:
            return Judgement(eq, "unreadable", str(exc).removeprefix("claim: "))
        except (ArithmeticError, ValueError, IndexError, KeyError, TypeError) as exc:   # cannot be evaluated
            return Judgement(eq, "unreadable", f"cannot evaluate it: {type(exc).__name__}: {exc}")
        if not instances and not telling and extra < MAX_SEEDS:
            # 0 = 0 everywhere so far (a ReLU unit off at every instance): a wrong line could pass; look on
            instances.append(make_instance(result.quantities, extra))
            extra += 1
    if not compared:
        return Judgement(eq, "unreadable", "nothing was compared")
    return Judgement(eq, "correct")


def _show(value) -> str:
    value = np.asarray(value, dtype=float)
    if value.size == 1:
        return f"{float(value.reshape(())):.6g}"
    return np.array2string(value, precision=4, max_line_width=80)


def read_back(result, tex: str) -> ReadbackReport:
    from .oracle import make_instance
    from .verify import Meaning

    meaning = Meaning(result)
    instances = [make_instance(result.quantities, seed) for seed in range(TRIALS)]
    return ReadbackReport(tuple(judge_equation(result, eq, meaning, instances) for eq in printed_equations(tex)))
