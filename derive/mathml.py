"""LaTeX math as MathML that is safe to put in a page: browsers render it natively, offline.

latex2mathml passes some input through unescaped (`\\text{<script>}` stays a tag, `\\href{…}` becomes
an attribute), so its output is parsed as XML and rebuilt from an allow-list of MathML elements and
presentation attributes; anything else refuses the formula. No markup of the user's reaches a page.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html import escape

from .errors import DeriveError

_NS = "{http://www.w3.org/1998/Math/MathML}"
ELEMENTS = frozenset("""math semantics mrow mi mo mn ms mtext mspace msub msup msubsup mfrac msqrt mroot
    mstyle mtable mtr mtd munder mover munderover mpadded mphantom menclose mmultiscripts mprescripts
    none""".split())           # not merror: a formula latex2mathml could not read is refused
ATTRIBUTES = frozenset("""display mathvariant displaystyle scriptlevel stretchy fence separator lspace rspace
    columnalign rowalign columnspacing rowspacing columnlines rowlines frame width height depth linethickness
    accent accentunder minsize maxsize symmetric movablelimits form notation largeop align""".split())
# Attribute values are lengths, keywords and lists of them: never a URL, a script or a style.
_VALUE = re.compile(r"[A-Za-z0-9 .%+\-]{0,80}")


class MathMLError(DeriveError):
    pass


def convert(tex: str, display: bool = False) -> str:
    """MathML for a formula; MathMLError when it cannot be written, or would carry anything but math."""
    from latex2mathml.converter import convert as latex2mathml

    # latex2mathml lays out align* as a table but not aligned (the same rows, in a display)
    source = tex.replace(r"\begin{aligned}", r"\begin{align*}").replace(r"\end{aligned}", r"\end{align*}")
    try:
        raw = latex2mathml(source, display="block" if display else "inline")
    except Exception as exc:        # latex2mathml raises its own classes for what it does not know
        raise MathMLError(f"cannot write this formula as MathML ({type(exc).__name__}: {str(exc)[:120]}): "
                          f"{tex[:120]}") from None
    return sanitize(raw, tex)


def sanitize(markup: str, tex: str = "") -> str:
    """The markup rebuilt from allowed elements and attributes, every text escaped."""
    try:
        root = ET.fromstring(markup)
    except ET.ParseError:
        raise MathMLError(f"cannot write this formula as MathML (markup in its text): {tex[:120]}") from None
    out: list[str] = []
    _write(root, out, tex)
    return "".join(out)


def _write(node, out: list[str], tex: str) -> None:
    tag = node.tag[len(_NS):] if node.tag.startswith(_NS) else node.tag
    if tag not in ELEMENTS:
        raise MathMLError(f"cannot write this formula as MathML (it makes <{escape(tag)[:20]}>): {tex[:120]}")
    attributes = []
    for name, value in sorted(node.attrib.items()):
        if name not in ATTRIBUTES or not _VALUE.fullmatch(value):
            raise MathMLError(f"cannot write this formula as MathML (attribute {escape(name)[:20]}): {tex[:120]}")
        attributes.append(f' {name}="{escape(value)}"')
    if tag == "math":
        attributes.insert(0, ' xmlns="http://www.w3.org/1998/Math/MathML"')
    out.append(f"<{tag}{''.join(attributes)}>")
    if node.text:
        out.append(escape(node.text, quote=False))
    for child in node:
        _write(child, out, tex)
        if child.tail:
            out.append(escape(child.tail, quote=False))
    out.append(f"</{tag}>")
