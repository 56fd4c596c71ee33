"""One escaping rule per target language. Text from a spec (a title, a name) reaches a document,
generated code or a web page only through these functions."""
from __future__ import annotations

import html

_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_text(text: str) -> str:
    """Plain text made safe for LaTeX text mode: every special character escaped."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def python_string_body(text: str) -> str:
    """Text made safe inside any Python string literal, triple-quoted docstrings included: quotes and
    backslashes escaped, and every character that is not printable ASCII written as an escape, so the
    text can neither end the string nor change how the module is read."""
    out = []
    for ch in str(text):
        if ch in ('"', "'", "\\"):
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def html_text(text: str) -> str:
    """Text made safe for HTML element content and quoted attribute values."""
    return html.escape(str(text), quote=True)
