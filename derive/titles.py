"""Document titles: text escaped for LaTeX, and mathematics between $...$ read by derive's own
expression grammar and printed by SymPy, so a title can say $\\sigma(w x + b)$ without any of the
user's TeX reaching the document."""
from __future__ import annotations

import re

from .errors import DeriveError, SpecError
from .escape import latex_text

_MATH = re.compile(r"\$([^$]*)\$")


def _math_tex(text: str, field: str) -> str:
    import sympy as sp

    from .expr import parse, variables
    from .graph import _to_sympy
    from .printing import safe_symbol

    sides = text.split("=")
    if len(sides) > 3 or not all(side.strip() for side in sides):
        raise SpecError(field, text, "mathematics between $...$ as an expression, or two or three "
                        "expressions joined by =, such as $(x + y) z$")
    out = []
    for side in sides:
        try:
            tree = parse(side)
        except DeriveError as exc:
            raise SpecError(field, text, "mathematics derive can read: " + str(exc).removeprefix("expression: ")) from None
        symbols = {name: sp.Symbol(name, real=True) for name in variables(tree)}
        with sp.evaluate(False):            # as written: (x + y) z stays in that order
            expr = _to_sympy(tree, symbols)
            expr = expr.xreplace({f: sp.Integer(int(f)) for f in expr.atoms(sp.Float) if float(f).is_integer()})
        out.append(sp.latex(expr, order="none", symbol_names={s: safe_symbol(s.name) for s in symbols.values()}))
    return " = ".join(out)


def split_title(title: str, field: str = "title") -> list[tuple[str, str]]:
    """[('text', ...), ('math', LaTeX), ...]; an odd $ is an error."""
    if title.count("$") % 2:
        raise SpecError(field, title, "text with mathematics between pairs of $; one $ is unmatched")
    parts, position = [], 0
    for match in _MATH.finditer(title):
        if match.start() > position:
            parts.append(("text", title[position:match.start()]))
        parts.append(("math", _math_tex(match.group(1), field)))
        position = match.end()
    if position < len(title):
        parts.append(("text", title[position:]))
    return parts


def title_text(spec, lang: str) -> str:
    return (spec.title_zh if lang == "zh" and spec.title_zh else spec.title) or spec.name


def title_tex(spec, lang: str) -> str:
    field = "title.zh" if lang == "zh" and spec.title_zh else "title"
    return "".join(f"${value}$" if kind == "math" else latex_text(value, cjk=lang == "zh")
                   for kind, value in split_title(title_text(spec, lang), field))


def title_plain(spec, lang: str) -> str:
    """The title for Markdown, HTML and slides: math as $...$ LaTeX (rendered there), text as is."""
    return "".join(f"${value}$" if kind == "math" else value for kind, value in split_title(title_text(spec, lang)))
