"""The safe parser for user math: a lark grammar into our own small expression tree. Never eval.

Accepts plain text (`(x + y) * z`, `1/(1+exp(-(w0*x0+w1*x1+w2)))`) and the LaTeX people write
(`\\frac{1}{1+e^{-(w_0 x_0 + w_1 x_1 + w_2)}}`, `\\sigma(x)`, `a \\cdot b`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedInput

from .errors import DeriveError
from .parse_errors import Vocabulary, from_lark, located

MAX_CHARS = 10_000
MAX_NESTING = 200
MAX_OPERATIONS = 300      # operators and function calls: bounds the depth of every tree walk after parsing
FUNCTIONS = ("exp", "log", "sqrt", "sigmoid", "tanh", "relu", "max")

GRAMMAR = r"""
?start: sum
?sum: product
    | sum "+" product              -> add
    | sum "-" product              -> sub
?product: signed
    | product ("*" | "\\cdot" | "\\times") signed   -> mul
    | product "/" signed           -> div
    | product power                -> mul
?signed: power
    | "-" signed                   -> neg
    | "+" signed
?power: atom
    | atom "^" exponent            -> pow
?exponent: power
    | "-" power                    -> neg
?atom: NUMBER                      -> number
    | NAME                         -> variable
    | "(" sum ")"
    | "\\left(" sum "\\right)"
    | "{" sum "}"
    | "\\frac" "{" sum "}" "{" sum "}"                  -> div
    | FUNC "(" sum ")"             -> call
    | LATEX_FUNC "(" sum ")"       -> call
    | LATEX_FUNC "\\left(" sum "\\right)"               -> call
    | "\\sqrt" "{" sum "}"         -> sqrt
    | MAX "(" sum "," sum ")"      -> maximum
FUNC.2: /(exp|log|ln|sqrt|sigmoid|tanh|relu)(?![A-Za-z0-9_])/
MAX.2: /\\?max(?![A-Za-z0-9_])/
LATEX_FUNC.2: /\\(exp|log|ln|sigma|tanh)(?![A-Za-z])|\\operatorname\{(ReLU|relu)\}|\\text\{(ReLU|relu)\}|\\mathrm\{(ReLU|relu)\}/
NAME: /[A-Za-z][A-Za-z0-9]*(?:_\{[A-Za-z0-9]+\}|_[A-Za-z0-9])?/
NUMBER: /(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?/
%ignore /\s+/
%ignore /\\[,;!]/
"""

_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)

# The grammar's terminals in words, for parse errors (by name, or by the literal text of an unnamed
# one); the order is the order of a list of alternatives. tests/test_cli_messages.py checks that
# every terminal is here.
VOCABULARY = Vocabulary(
    what="expression",
    words={
        "NUMBER": "a number",
        "NAME": "a variable such as w_0",
        "FUNC": "a function such as exp(…)",
        "LATEX_FUNC": "a function such as \\sigma(…)",
        "MAX": "max(a, b)",
        "\\frac": "\\frac{…}{…}",
        "\\sqrt": "\\sqrt{…}",
        "LPAR": "an opening parenthesis '('",
        "\\left(": "'\\left('",
        "LBRACE": "an opening brace '{'",
        "PLUS": "'+'",
        "MINUS": "'-'",
        "STAR": "'*'",
        "\\cdot": "'\\cdot'",
        "\\times": "'\\times'",
        "SLASH": "'/'",
        "CIRCUMFLEX": "'^'",
        "COMMA": "a comma ','",
        "RPAR": "a closing parenthesis ')'",
        "\\right)": "'\\right)'",
        "RBRACE": "a closing brace '}'",
    },
    term_starts=frozenset({"NUMBER", "NAME", "FUNC", "LATEX_FUNC", "MAX", "\\frac", "\\sqrt", "LPAR", "\\left(",
                           "LBRACE"}),
    term_phrase="a term (a number, a variable, a function or '(')",
    operators=frozenset({"PLUS", "MINUS", "STAR", "\\cdot", "\\times", "SLASH", "CIRCUMFLEX"}),
    operator_phrase="an operator (+ - * / ^)",
)


@dataclass(frozen=True)
class Node:
    """One operation of the user's expression: op is 'number', 'variable' or a function/operator."""

    op: str
    args: tuple["Node", ...] = ()
    value: float | None = None     # for numbers
    name: str | None = None        # for variables


def _canonical_name(token: str) -> str:
    """w_{0}, w_0 and w0 all name the variable w0."""
    return token.replace("_{", "").replace("}", "").replace("_", "")


@v_args(inline=True)
class _Build(Transformer):
    def number(self, token):
        return Node("number", value=float(token))

    def variable(self, token):
        name = _canonical_name(str(token))
        if name == "e":
            return Node("number", value=__import__("math").e, name="e")
        return Node("variable", name=name)

    def add(self, a, b):
        return Node("add", (a, b))

    def sub(self, a, b):
        return Node("sub", (a, b))

    def mul(self, a, b):
        return Node("mul", (a, b))

    def div(self, a, b):
        return Node("div", (a, b))

    def neg(self, a):
        return Node("neg", (a,))

    def pow(self, base, exponent):
        if base.op == "number" and base.name == "e":
            return Node("exp", (exponent,))
        return Node("pow", (base, exponent))

    def sqrt(self, a):
        return Node("sqrt", (a,))

    def maximum(self, _token, a, b):
        return Node("max", (a, b))

    def call(self, token, arg):
        name = re.sub(r"^\\|operatorname\{|text\{|mathrm\{|\}$", "", str(token)).lower()
        name = {"ln": "log", "sigma": "sigmoid"}.get(name, name)
        return Node(name, (arg,))


_CALL = re.compile(r"(?<![\\A-Za-z0-9_{])([A-Za-z][A-Za-z0-9]+)\s*\(")


def normalize(text: str) -> str:
    """The expression as the grammar reads it: −, ·, ×, σ and full-width parentheses in ASCII and LaTeX."""
    return (text.replace("−", "-").replace("·", "*").replace("×", "*").replace("σ", "\\sigma ")
            .replace("（", "(").replace("）", ")"))


def parse(text: str) -> Node:
    original = text
    if len(text) > MAX_CHARS:
        raise DeriveError(f"expression: {len(text)} characters is too long; at most {MAX_CHARS} are accepted")
    if "\x00" in text:
        raise DeriveError("expression: contains a NUL byte; only printable text is accepted")
    text = normalize(text)
    for match in _CALL.finditer(text):
        if match.group(1).lower() not in FUNCTIONS + ("ln",):
            raise located("expression", original, match.start(1),
                          f"unknown function '{match.group(1)}'; the functions are {', '.join(FUNCTIONS)} "
                          "(and ln, \\sigma, \\frac, e^{...})", text, normalize=normalize)
    operations = len(re.findall(r"[-+*/^]|\\frac|\\cdot|\\times|[A-Za-z]+\s*\(|\\[A-Za-z]+\{", text))
    if operations > MAX_OPERATIONS:
        raise DeriveError(f"expression: {operations} operations is too many; at most {MAX_OPERATIONS} are accepted "
                          "(a graph of that many gates is already more than a page can show)")
    depth = 0
    for column, ch in enumerate(text, start=1):
        depth += ch in "({" and 1 or (-1 if ch in ")}" else 0)
        if depth > MAX_NESTING:
            raise DeriveError(f"expression: brackets nested deeper than {MAX_NESTING} at column {column}")
    try:
        return _Build().transform(_PARSER.parse(text))
    except UnexpectedInput as exc:
        raise from_lark(exc, _PARSER, VOCABULARY, text, original, normalize=normalize) from None


def variables(node: Node) -> list[str]:
    seen: list[str] = []

    def walk(n):
        if n.op == "variable" and n.name not in seen:
            seen.append(n.name)
        for a in n.args:
            walk(a)
    walk(node)
    return seen
