"""The grammar for claimed matrix formulas (LaTeX and plain text), into a small tree. Never eval.

    \\frac{\\partial L}{\\partial W^{(2)}} = \\delta^{(3)} (a^{(2)})^T
    delta2 * a1.T
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from .errors import DeriveError
from .parse_errors import Vocabulary, bracket_problem, from_lark, located

MAX_CHARS = 20_000
MAX_TOKENS = 1_500

GRAMMAR = r"""
?start: sum
?sum: term
    | sum "+" term                    -> add
    | sum "-" term                    -> sub
?term: signed
    | SUM term                        -> sum
    | term SUM term                   -> mul_sum
    | term MUL signed                 -> mul
    | term STAR signed                -> star
    | term DOTSTAR signed             -> hadamard
    | term "@" signed                 -> mul
    | term HADAMARD signed            -> hadamard
    | term OSLASH signed              -> divide
    | term postfix                    -> mul
?signed: postfix
    | "-" signed                      -> neg
?postfix: primary
    | postfix TRANSPOSE               -> transpose
    | postfix POWER                   -> power
?primary: SYMBOL                      -> symbol
    | NUMBER                          -> number
    | "\\frac" "{" sum "}" "{" sum "}"                      -> frac
    | "\\frac" "{" PARTIAL SYMBOL "}" "{" PARTIAL SYMBOL "}" -> partial
    | "\\frac" "{" PARTIAL "}" "{" PARTIAL SYMBOL "}" primary  -> partial_of
    | "[" (SYMBOL | NUMBER) "=" (SYMBOL | NUMBER) "]"  -> iverson
    | "[" sum ">" NUMBER "]"          -> indicator
    | FUNCTION "(" sum ")"            -> apply
    | DIAG "(" sum ")"                -> diag
    | ELEMENTARY "(" sum ")"          -> elementary
    | ELEMENTARY "{" "(" sum ")" "}"  -> elementary
    | EXP_OPEN sum "}"                -> exp
    | BMATRIX_BEGIN rows BMATRIX_END  -> matrix
    | "(" sum ")"
    | "[" sum "]"
    | "{" sum "}"
rows: row ("\\\\" row)* "\\\\"?
row: sum ("&" sum)*
EXP_OPEN.4: /e\^\{/
POWER: /\^\{[0-9]+\}|\^[0-9]/
ELEMENTARY.3: /\\(exp|log|ln)(?![A-Za-z])|(exp|log|ln)(?=\s*\()/
BMATRIX_BEGIN: /\\begin\{[bp]matrix\}/
BMATRIX_END: /\\end\{[bp]matrix\}/
MUL: "\\cdot" | "\\times"
STAR: "*" | "∗" | "\\ast"
DOTSTAR: ".*"
SUM.3: /\\sum(_\{\s*[a-z]\s*(=\s*1\s*)?\}|_[a-z])(\^\{[A-Za-z0-9_{}]+\}|\^[A-Za-z0-9])?/
HADAMARD: "\\odot" | "\\circ" | "⊙" | "∘"
OSLASH: "\\oslash" | "⊘"
DIAG.3: /\\operatorname\{diag\}|\\mathrm\{diag\}|diag(?=\s*(\\left)?\s*\()/
PARTIAL: "\\partial"
TRANSPOSE: /\^\{\s*(T|\\top|\\intercal|\\mathsf\{T\}|\\mathsf T|\\mathrm\{T\})\s*\}|\^(T|\\top|\\intercal)(?![A-Za-z])|\.T(?![A-Za-z0-9])/
FUNCTION.3: /(\\sigma|\\operatorname\{(ReLU|relu|softmax|softplus|LReLU|id)\}|\\text\{(ReLU|relu)\}|\\tanh|sigmoid|sigma|softplus|relu|tanh|g|f)(\^\{2\}|\^2)?('|\\prime|\^\{\\prime\})?(?=\s*(\\left)?\s*\()/
SYMBOL.2: /(y_\{\\mathrm\{out\}\}|y_\{\\text\{out\}\}|y_\{out\}|y_out|\\hat\{y\}|\\hat y|\\mathbf\{[A-Za-z1]\}|[A-Z]_\{\\mathrm\{data\}\}|\\mathit\{[A-Za-z]{1,12}\}|\\boldsymbol\{\\delta\}|\\tilde\{\\Theta\}|\\(delta|Delta|Theta|theta|lambda)|delta|Delta|Theta|theta|lambda|[A-Za-z])(\^\{\([a-z]\)\}|(\^\{\(?[0-9]+\)?(\([a-z]\))?\}|\^\([0-9]+\)|\^[0-9])(_\{[0-9a-z]+(,\s?[0-9a-z]+)?\}|_\{\\cdot\s?0\}|_[0-9a-z])?|(_\{[0-9a-z]+(,\s?[0-9a-z]+)?\}|_[0-9a-z])(\^\{\(?[0-9]+\)?\}|\^\([0-9]+\)|\^[0-9])?|[0-9]+)?/
NUMBER: /[0-9]+(\.[0-9]+)?/
%ignore /\s+/
%ignore /\\left\.|\\right\.|\\left|\\right|\\[,;!]|\\bigl|\\bigr|\\Bigl|\\Bigr|\\qquad|\\quad|\\displaystyle/
"""

_PARSER = Lark(GRAMMAR, parser="lalr")

# The grammar's terminals in words, for parse errors (by name, or by the literal text of an unnamed
# one); the order is the order of a list of alternatives. tests/test_cli_messages.py checks that
# every terminal is here.
VOCABULARY = Vocabulary(
    what="claim",
    words={
        "SYMBOL": "a symbol such as \\delta^{2}",
        "NUMBER": "a number",
        "FUNCTION": "a function such as \\sigma'(…)",
        "ELEMENTARY": "a function such as \\log(…)",
        "EXP_OPEN": "e^{…}",
        "DIAG": "diag(…)",
        "\\frac": "\\frac{…}{…}",
        "SUM": "a sum \\sum_{k}",
        "BMATRIX_BEGIN": "\\begin{bmatrix}",
        "LPAR": "an opening parenthesis '('",
        "LSQB": "an opening bracket '['",
        "LBRACE": "an opening brace '{'",
        "PARTIAL": "\\partial",
        "PLUS": "'+'",
        "MINUS": "'-'",
        "MUL": "\\cdot",
        "STAR": "'*'",
        "AT": "'@'",
        "DOTSTAR": "'.*'",
        "HADAMARD": "\\odot",
        "OSLASH": "\\oslash",
        "TRANSPOSE": "a transpose ^T",
        "POWER": "a power such as ^2",
        "EQUAL": "'='",
        "MORETHAN": "'>'",
        "AMPERSAND": "'&' (the next entry of the row)",
        "\\\\": "'\\\\' (the next row)",
        "BMATRIX_END": "\\end{bmatrix}",
        "RPAR": "a closing parenthesis ')'",
        "RSQB": "a closing bracket ']'",
        "RBRACE": "a closing brace '}'",
    },
    term_starts=frozenset({"SYMBOL", "NUMBER", "FUNCTION", "ELEMENTARY", "EXP_OPEN", "DIAG", "\\frac", "SUM",
                           "BMATRIX_BEGIN", "LPAR", "LSQB", "LBRACE"}),
    term_phrase="a term (a symbol, a number, a function or '(')",
    operators=frozenset({"PLUS", "MINUS", "MUL", "STAR", "AT", "DOTSTAR", "HADAMARD", "OSLASH", "TRANSPOSE",
                         "POWER"}),
    operator_phrase="an operator (+ - \\cdot * \\odot ^T)",
)


@dataclass(frozen=True)
class Term:
    op: str                       # symbol, number, partial, apply, add, sub, mul, star, hadamard, neg, transpose, …
    args: tuple["Term", ...] = ()
    name: str = ""                # symbol base name, function name
    label: int | None = None      # the layer label as written
    indices: tuple = ()            # an entry: w^{1}_{22}, x_2, w_{jk} (ints or index letters), notation order
    value: float | None = None
    prime: bool = False
    sample: str | None = None     # L^{(s)}: the quantity of sample s (a letter)

    def __str__(self):
        return render(self)


NAMED_FORMS = {"\\hat{y}": "hat_y", "\\hat y": "hat_y", "\\boldsymbol{\\delta}": "bold_delta",
               "\\mathbf{1}": "ones", "\\tilde{\\Theta}": "tilde_Theta"}        # LaTeX -> the claim's name; ones: the vector of ones


def base_name(text: str) -> str:
    """A symbol's LaTeX base (no labels or indices) -> its name: \\mathbf{X} -> X, \\hat{y} -> hat_y.
    The claim grammar and the notation's own names go through this one function."""
    for form, name in NAMED_FORMS.items():
        text = text.replace(form, name)
    return re.sub(r"\\(mathbf|mathit|mathrm)\{([A-Za-z]+)\}", r"\2", text).lstrip("\\")


def _symbol_term(token: str) -> Term:
    token = token.strip()
    sample = re.search(r"\^\{\(([a-z])\)\}", token)
    if sample:
        token = token[:sample.start()] + token[sample.end():]
    else:                                            # delta^{2(i)}, a^{(2)(i)}: layer and sample together
        sample = re.search(r"(?<=[0-9)])\(([a-z])\)(?=\})", token)
        if sample:
            token = token[:sample.start()] + token[sample.end():]
    column0 = re.search(r"_\{\\cdot\s?0\}", token)      # Ng's bias column: Theta^{(l)}_{.0}
    if column0:
        token = token[:column0.start()] + token[column0.end():]
    base, label, indices = _split_symbol(token)
    return Term("symbol", name=base + ("_col0" if column0 else ""), label=label, indices=indices,
                sample=sample.group(1) if sample else None)


def _split_symbol(token: str) -> tuple[str, int | None, tuple[int, ...]]:
    token = token.strip()
    if token.startswith("y_") and "out" in token:
        return "y_out", None, ()
    if token.endswith(r"_{\mathrm{data}}"):                # the loss without its L2 term
        return token[0] + "_data", None, ()
    sub = re.search(r"_\{([0-9a-z]+)(?:,\s?([0-9a-z]+))?\}|_([0-9a-z])", token)
    indices: tuple = ()
    as_index = lambda text: int(text) if text.isdigit() else text
    if sub:
        if sub.group(3):
            indices = (as_index(sub.group(3)),)
        elif sub.group(2):
            indices = (as_index(sub.group(1)), as_index(sub.group(2)))
        else:
            indices = tuple(as_index(c) for c in sub.group(1))
        token = token[:sub.start()] + token[sub.end():]
    m = re.fullmatch(r"(.*?)(\^\{\(?([0-9]+)\)?\}|\^\(([0-9]+)\)|\^([0-9])|([0-9]+))?", token)
    base, label = m.group(1), m.group(3) or m.group(4) or m.group(5) or m.group(6)
    return base_name(base), int(label) if label else None, indices


@v_args(inline=True)
class _Build(Transformer):
    def symbol(self, token):
        return _symbol_term(str(token))

    def number(self, token):
        return Term("number", value=float(token))

    def frac(self, a, b):
        return Term("mul", (a, Term("recip", (b,))))

    def partial(self, _p1, num, _p2, den):
        return Term("partial", (_symbol_term(str(num)), _symbol_term(str(den))))

    def partial_of(self, _p1, _p2, den, body):
        """d/dx (expression): the operator form."""
        return Term("partial", (body, _symbol_term(str(den))))

    def iverson(self, left, right):
        """[j = k]: 1 when the two indices are equal (the Kronecker delta), else 0."""
        letters = [int(str(t)) if str(t).isdigit() else _split_symbol(str(t))[0] for t in (left, right)]
        return Term("iverson", indices=tuple(letters))

    def mul_sum(self, left, token, body):
        return Term("mul", (left, self.sum(token, body)))

    def apply(self, fn, arg):
        text = str(fn)
        squared = bool(re.search(r"\^\{?2\}?", text))         # \tanh^{2}(z) is (tanh z)^2
        text = re.sub(r"\^\{?2\}?", "", text)
        prime = text.endswith(("'", "\\prime", "^{\\prime}"))
        name = re.sub(r"'|\\prime|\^\{\\prime\}", "", text)
        name = re.sub(r"\\operatorname\{|\\text\{|\}|\\", "", name).lower()
        applied = Term("apply", (arg,), name={"sigma": "sigmoid", "lrelu": "leaky_relu", "id": "identity"}.get(name, name),
                       prime=prime)
        return Term("power", (applied,), value=2.0) if squared else applied

    def indicator(self, body, number):
        """[z > 0], \\mathbb{1}[z > 0], 1_{z > 0}: 1 where the entry exceeds the number, else 0 (ReLU')."""
        return Term("indicator", (body,), value=float(number))

    def sum(self, token, body):
        m = re.match(r"\\sum_\{?\s*([a-z])\s*(?:=\s*1\s*)?\}?(?:\^\{?([A-Za-z0-9_{}]+?)\}?)?$", str(token))
        upper = m.group(2).replace("{", "").replace("}", "") if m.group(2) else ""
        return Term("sum", (body,), name=m.group(1), value=float(upper) if upper.isdigit() else None,
                    label=None, indices=(upper,) if upper and not upper.isdigit() else ())

    def power(self, base, token):
        return Term("power", (base,), value=float(re.sub(r"[^0-9]", "", str(token))))

    def elementary(self, token, arg):
        name = str(token).lstrip("\\")
        return Term("elementary", (arg,), name="log" if name == "ln" else name)

    def exp(self, _open, arg):
        return Term("elementary", (arg,), name="exp")

    def matrix(self, _begin, rows, _end):
        return rows

    def rows(self, *rows):
        widths = {len(r.args) for r in rows}
        if len(widths) != 1:
            raise DeriveError("claim: the rows of a bmatrix have different lengths")
        return Term("matrix", tuple(rows))

    def row(self, *cells):
        return Term("row", tuple(cells))

    def add(self, a, b):
        return Term("add", (a, b))

    def sub(self, a, b):
        return Term("sub", (a, b))

    def mul(self, a, *rest):
        b = rest[-1]
        return Term("mul", (a, b))

    def star(self, a, _op, b):
        """a * b: NumPy's entry-wise product or Octave's matrix product; the shapes decide (values.py)."""
        return Term("star", (a, b))

    def hadamard(self, a, _op, b):
        return Term("hadamard", (a, b))

    def divide(self, a, _op, b):
        return Term("divide", (a, b))

    def diag(self, _token, arg):
        return Term("diag", (arg,))

    def neg(self, a):
        return Term("neg", (a,))

    def transpose(self, a, _t):
        return Term("transpose", (a,))


NORMALIZE = (("−", "-"), ("ᵀ", "^T"), ("⊤", "^T"), ("·", " \\cdot "), ("×", " \\times "), ("（", "("), ("）", ")"), ("′", "'"))
SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")       # δ¹ is \\delta^{1}, x₂ is x_{2}
SUBSCRIPTS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")
GREEK = (("σ", "\\sigma"), ("δ", "\\delta"), ("Δ", "\\Delta"), ("Θ", "\\Theta"), ("θ", "\\theta"),
         ("∂", "\\partial"), ("λ", "\\lambda"))


def _indicator_brackets(text: str) -> str:
    """\\mathbb{1}[c], \\mathbb{1}_{c} and 1_{c} written as the bracket [c] the grammar reads."""
    text = re.sub(r"\\mathbb\{1\}\s*(?=\[)", "", text)
    out, i = [], 0
    for match in re.finditer(r"(\\mathbb\{1\}|(?<![A-Za-z0-9}^_])1)_\{", text):
        if match.start() < i:
            continue
        depth, k = 1, match.end()
        while k < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            k += 1
        if depth:
            break
        inner = text[match.end():k - 1]
        if ">" not in inner:
            continue
        out.append(text[i:match.start()] + "[" + inner + "]")
        i = k
    return "".join(out) + text[i:]


def normalize(text: str) -> str:
    """The claim as the grammar reads it: Unicode forms (δ², a₁, ᵀ, ·) written as LaTeX."""
    for old, new in NORMALIZE:
        text = text.replace(old, new)
    text = re.sub(r"\\mathrm\{d\}\s*", r"\\partial ", text)         # d/dw written upright: a partial here
    text = re.sub("[⁰¹²³⁴⁵⁶⁷⁸⁹]+", lambda m: "^{" + m.group(0).translate(SUPERSCRIPTS) + "}", text)
    text = re.sub("[₀₁₂₃₄₅₆₇₈₉]+", lambda m: "_{" + m.group(0).translate(SUBSCRIPTS) + "}", text)
    text = _indicator_brackets(text)
    for letter, command in GREEK:        # δ^{2} is \delta^{2}; δx is \delta x
        text = re.sub(letter + r"(?=[A-Za-z])", lambda _, c=command: c + " ", text).replace(letter, command)
    return text


def parse_claim(text: str, scale: int = 1, before: str = "") -> Term:
    """scale: a multiple of the limits, for derive's own printed lines (a written-out entry of a
    deep concrete net is longer than any claim a user types). before: what the user wrote in front of
    `text` (a left side "dL/dW =" split off), shown with a parse error and counted in its columns."""
    max_chars, max_tokens = MAX_CHARS * scale, MAX_TOKENS * scale
    original = text
    if len(text) > max_chars:
        raise DeriveError(f"claim: {len(text)} characters is too long; at most {max_chars} are accepted")
    if "\x00" in text:
        raise DeriveError("claim: contains a NUL byte; only printable text is accepted")
    text = normalize(text)
    tokens = len(re.findall(r"[A-Za-z]+|[0-9]+|[-+*/&^]", text))
    if tokens > max_tokens:
        raise DeriveError(f"claim: {tokens} symbols and operators is too long; at most {max_tokens} are accepted")
    braces = bracket_problem(text, families="{")
    if braces:
        raise located("claim", original, braces[0], braces[1], text, before, normalize)
    if re.search(r"\\(input|include|write|openin|openout|catcode|def|immediate|usepackage)\b", text):
        raise DeriveError("claim: TeX commands such as \\input are not mathematics; not accepted")
    try:
        return _Build().transform(_PARSER.parse(text))
    except RecursionError:
        raise DeriveError("claim: nested too deeply to read") from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, DeriveError):
            raise exc.orig_exc from None
        raise
    except UnexpectedInput as exc:
        raise from_lark(exc, _PARSER, VOCABULARY, text, original, before, normalize) from None


def render(t: Term) -> str:
    """A plain-text form of a term, for messages."""
    if t.op == "sum":
        return f"sum_{t.name} {render(t.args[0])}"
    if t.op == "elementary":
        return f"{t.name}({render(t.args[0])})"
    if t.op == "power":
        return f"({render(t.args[0])})^{t.value:g}"
    if t.op == "matrix":
        return "[" + "; ".join(", ".join(render(c) for c in r.args) for r in t.args) + "]"
    if t.op == "symbol":
        entry = "_" + "".join(map(str, t.indices)) if t.indices else ""
        return t.name + ("" if t.label is None else str(t.label)) + entry
    if t.op == "number":
        return f"{t.value:g}"
    if t.op == "partial":
        num = t.args[0]
        top = "L" if num.op == "symbol" and num.name in ("L", "E", "J") and not num.sample else render(num)
        return f"d{top}/d{render(t.args[1])}"
    if t.op == "iverson":
        return f"[{t.indices[0]} = {t.indices[1]}]"
    if t.op == "indicator":
        return f"[{render(t.args[0])} > {t.value:g}]"
    if t.op == "apply":
        return f"{t.name}{chr(39) if t.prime else ''}({render(t.args[0])})"
    if t.op == "transpose":
        return f"({render(t.args[0])})^T"
    if t.op == "neg":
        return f"-({render(t.args[0])})"
    if t.op == "recip":
        return f"1/({render(t.args[0])})"
    if t.op == "mul" and t.args[1].op == "recip":     # \frac{a}{b}
        den = t.args[1].args[0]
        den_text = render(den) if den.op in ("symbol", "number") else f"({render(den)})"
        return f"({render(t.args[0])}/{den_text})"
    if t.op == "diag":
        return f"diag({render(t.args[0])})"
    sym = {"add": " + ", "sub": " - ", "mul": " ", "star": " * ", "hadamard": " ⊙ ", "divide": " ⊘ "}[t.op]
    return "(" + sym.join(render(a) for a in t.args) + ")"


def split_equals(text: str) -> list[str]:
    """Split at '=' outside braces, so \\sum_{k=1} stays whole."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):          # [j = k] and \sum_{k=1} keep their '='
        depth += (ch in "{[(") - (ch in "}])")
        if ch == "=" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts
