r"""Parse errors in the user's terms: where the text stops making sense, what was found there and
what would have been accepted, in words, with the text and a caret under the place.

    the claim could not be read at column 10: found ')', which closes nothing (no '(' is open before it)
      \delta^2 )x
               ^

lark names its terminals (LPAR, BMATRIX_BEGIN, __ANON_0); those names never reach a message. Each
grammar describes its terminals in a Vocabulary (data, next to the grammar), and a terminal a
vocabulary forgets is described by its literal text, never by its name.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Callable

from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .errors import InputSyntaxError

EXCERPT_WIDTH = 72            # characters of the offending line shown around the caret
END = "$END"


@dataclass(frozen=True)
class Vocabulary:
    """What a grammar's terminals are called in a message.

    words: terminal name (or, for an anonymous terminal, its literal text) -> words, in the order a
    list of alternatives is written. When at least three of `term_starts` would be accepted they are
    written as the one phrase `term_phrase` (a unary + or - goes with them); likewise `operators`
    and `operator_phrase`."""

    what: str                          # "claim", "expression": the text's name in a message
    words: dict[str, str]
    term_starts: frozenset[str]
    term_phrase: str
    operators: frozenset[str]
    operator_phrase: str
    signs: frozenset[str] = frozenset({"PLUS", "MINUS"})

    @property
    def end(self) -> str:
        return f"the end of the {self.what}"


# --------------------------------------------------------------------------- brackets

_BRACKET = re.compile(r"\\begin\{[A-Za-z*]*\}|\\end\{[A-Za-z*]*\}|\\left\s*[(\[]|\\right\s*[)\]]|[()\[\]{}]")
_CLOSING = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class _Bracket:
    text: str        # as written: '(', '\left(', '\begin{bmatrix}'
    pos: int
    family: str      # '(', '[', '{' or the environment's name

    @property
    def closer(self) -> str:
        if self.text.startswith("\\begin"):
            return "\\end{" + self.family + "}"
        return ("\\right" if self.text.startswith("\\left") else "") + _CLOSING[self.family]


def _bracket(match: re.Match) -> tuple[_Bracket, bool]:
    """The bracket and whether it opens."""
    text = match.group(0)
    if text.startswith(("\\begin", "\\end")):
        return _Bracket(text, match.start(), text[text.index("{") + 1:-1]), text.startswith("\\begin")
    last = text[-1]
    family = {")": "(", "]": "[", "}": "{"}.get(last, last)
    return _Bracket(re.sub(r"\s+", "", text), match.start(), family), last in "([{"


def bracket_problem(text: str, families: str | None = None, upto: int | None = None):
    """The first bracket that closes nothing or the wrong thing, as (position, problem, end), scanning
    up to position `upto`; else, if `upto` is None, the innermost bracket never closed; else None. families:
    only these ('{' for braces); None for all, \\begin{..} \\end{..} included. A problem names other
    places as {column:POS}."""
    stack: list[_Bracket] = []
    for match in _BRACKET.finditer(text):
        if upto is not None and match.start() > upto:
            break
        bracket, opens = _bracket(match)
        if families is not None and bracket.family not in families:
            continue
        if opens:
            stack.append(bracket)
            continue
        shown = f"'{bracket.text}'"
        if not stack:
            opener = ("\\begin{" + bracket.family + "}" if bracket.text.startswith("\\end")
                      else ("\\left" if bracket.text.startswith("\\right") else "") + bracket.family)
            return bracket.pos, f"found {shown}, which closes nothing (no '{opener}' is open before it)", match.end()
        top = stack.pop()
        if top.family != bracket.family:
            return bracket.pos, (f"found {shown} where '{top.closer}' should close the '{top.text}' at "
                                 f"{{column:{top.pos}}}"), match.end()
    if upto is None and stack:
        top = stack[-1]
        return top.pos, f"the '{top.text}' here is never closed (the {{what}} ends before its '{top.closer}')", \
            top.pos + len(top.text)
    return None


# --------------------------------------------------------------------------- the message

def located(what: str, text: str, pos: int, problem: str, parsed: str | None = None,
            before: str = "", normalize: Callable[[str], str] | None = None) -> InputSyntaxError:
    """An error at position `pos` of `parsed`, the text as the parser saw it (normalized: δ became
    \\delta); shown on the user's `text` (`parsed` itself when None). before: what the user wrote in
    front of `text` (a left side "dL/dW =" split off), shown and counted in columns. The problem may
    name another place of `parsed` as {column:POS} and the text as {what}. normalize: the function that
    made `parsed` of `text`, to find a place of `parsed` in `text`."""
    def place(at: int) -> int:
        if parsed is not None and parsed != text:          # the end stays the end: just after the last character
            at = len(text.rstrip()) if not parsed[at:].strip() else _original_position(parsed, text, at, normalize)
        return len(before) + at

    whole = before + text
    problem = problem.replace("{what}", what)
    for ref in re.findall(r"\{column:(\d+)\}", problem):
        problem = problem.replace("{column:" + ref + "}", "column %d" % _column(whole, place(int(ref)))[1])
    line, column = _column(whole, place(pos))
    lines = whole.split("\n")
    where = f"line {line}, column {column}" if len(lines) > 1 else f"column {column}"
    return InputSyntaxError(f"the {what} could not be read at {where}: {problem}\n"
                            + excerpt(lines[line - 1], column), column=column, line=line, problem=problem)


def from_lark(exc: UnexpectedInput, parser, vocabulary: Vocabulary, parsed: str, text: str | None = None,
              before: str = "", normalize: Callable[[str], str] | None = None) -> InputSyntaxError:
    """lark's error on `parsed` (the normalized text) in words, shown on the user's `text` (see located)."""
    what = vocabulary.what
    if not parsed.strip():
        return InputSyntaxError(f"the {what} is empty", column=len(before) + 1, problem="empty")
    pos, problem = _diagnose(exc, parser, vocabulary, parsed)
    return located(what, parsed if text is None else text, pos, problem, parsed, before, normalize)


def _diagnose(exc: UnexpectedInput, parser, vocabulary: Vocabulary, parsed: str) -> tuple[int, str]:
    """(position in `parsed`, the problem in words)."""
    at_end = isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == END)
    if at_end:
        problem = bracket_problem(parsed)
        if problem:
            return problem[:2]
        pos, found = len(parsed.rstrip()), vocabulary.end
    elif isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        found = _describe_character(parsed[pos])
    else:
        pos = exc.token.start_pos if exc.token.start_pos is not None else len(parsed)
        found = _quote(str(exc.token))
    if not at_end:                  # a bracket that closes nothing or the wrong thing says so
        problem = bracket_problem(parsed, upto=pos)
        if problem and problem[0] <= pos < problem[2]:       # \right) is one bracket, found at its ')'
            return problem[:2]
    expected = _accepted(parser, parsed, None if at_end else pos) or _lark_expected(exc)
    words = describe(expected, vocabulary, parser)
    return pos, (f"found {found} where {words} was expected" if words else f"found {found}")


def describe(names, vocabulary: Vocabulary, parser=None) -> str:
    """'a term (...), an operator (...) or the end of the claim': the accepted terminals in words."""
    literal = {t.name: t.pattern.value for t in getattr(parser, "terminals", ())
               if type(t.pattern).__name__ == "PatternStr"}
    keys = {n if n in vocabulary.words or n == END else literal.get(n, n) for n in names
            if not n.startswith("__IGNORE")}
    parts: list[str] = []
    if len(keys & vocabulary.term_starts) >= 3:
        parts.append(vocabulary.term_phrase)
        keys -= vocabulary.term_starts
        if len(keys & vocabulary.operators) < 3:
            keys -= vocabulary.signs          # a unary sign starts a term too
    if len(keys & vocabulary.operators) >= 3:
        parts.append(vocabulary.operator_phrase)
        keys -= vocabulary.operators
    order = list(vocabulary.words)
    for key in sorted(keys - {END}, key=lambda k: (order.index(k) if k in order else len(order), k)):
        # a terminal the vocabulary forgets: its literal text if it has one, never its name
        words = vocabulary.words.get(key) or (_quote(key) if key in literal.values() else "another symbol")
        if words not in parts:
            parts.append(words)
    if END in keys:
        parts.append(vocabulary.end)
    if len(parts) > 1:
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    return parts[0] if parts else ""


def excerpt(line: str, column: int) -> str:
    """The line (a window of it when long), indented, and a caret under `column` (1-based); control
    characters are shown as '?', and a wide character takes two places."""
    index = column - 1
    start = 0
    if len(line) > EXCERPT_WIDTH:
        start = max(0, min(index - EXCERPT_WIDTH // 2, len(line) - EXCERPT_WIDTH))
    shown = line[start:start + EXCERPT_WIDTH]
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + EXCERPT_WIDTH < len(line) else ""
    shown = "".join("?" if _is_control(ch) else " " if ch == "\t" else ch for ch in shown)
    indent = len(prefix) + sum(_width(ch) for ch in shown[:index - start])
    return f"  {prefix}{shown}{suffix}\n  {' ' * indent}^"


# --------------------------------------------------------------------------- helpers

def _accepted(parser, parsed: str, pos: int | None) -> set[str] | None:
    """The terminals the parser accepts at `pos` (None: at the end), from the text before it. More
    complete than lark's own list, which an LALR parser computes after its default reductions."""
    try:
        interactive = parser.parse_interactive(parsed if pos is None else parsed[:pos])
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except Exception:            # the prefix alone does not lex or parse: lark's own list will do
        return None


def _lark_expected(exc: UnexpectedInput) -> set[str]:
    return set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())


def _original_position(parsed: str, text: str, pos: int, normalize: Callable[[str], str] | None = None) -> int:
    """The place in the user's text of position `pos` of `parsed`, the normalized text (δ became \\delta,
    − became -). With the normalizing function: the first character of `text` whose normalized prefix
    reaches past `pos` (a binary search; normalizing is local, so the prefix's length grows with it).
    Without: through the blocks the two texts have in common, for short texts."""
    if pos >= len(parsed):
        return len(text)
    if normalize is not None:
        low, high = 1, len(text)
        while low < high:
            middle = (low + high) // 2
            if len(normalize(text[:middle])) > pos:
                high = middle
            else:
                low = middle + 1
        return low - 1
    if len(parsed) * len(text) > 1_000_000:
        return min(pos, len(text))
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, parsed, text, autojunk=False).get_opcodes():
        if i1 <= pos < i2:
            return j1 + (pos - i1) if tag == "equal" else j1
    return len(text)


def _column(text: str, pos: int) -> tuple[int, int]:
    """(line, column), both 1-based, of position `pos`."""
    before = text[:pos]
    return before.count("\n") + 1, pos - (before.rfind("\n") + 1) + 1


def _quote(token: str) -> str:
    token = "".join("?" if _is_control(ch) else ch for ch in token)
    return f"'{token[:30]}…'" if len(token) > 30 else f"'{token}'"


def _describe_character(ch: str) -> str:
    if _is_control(ch) or ch.isspace() and ch not in " ":
        return f"the control character U+{ord(ch):04X}"
    name = unicodedata.name(ch, "")        # '∑' (n-ary summation): a symbol's name helps; a letter's not
    return f"'{ch}'" + (f" ({name.lower()})" if ord(ch) > 127 and name and not unicodedata.category(ch).startswith("L")
                        else "")


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") and ch not in "\t\n"


def _width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
