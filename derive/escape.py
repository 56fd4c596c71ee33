"""One escaping rule per target language. Text from a spec (a title, a name) reaches a document,
generated code or a web page only through these functions."""
from __future__ import annotations

import html

_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


_GREEK_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu",
                "nu", "xi", "omicron", "pi", "rho", "varsigma", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega")
# Greek letters and the mathematical signs a title, a claim or a diagnosis may hold, as LaTeX that every
# engine and font here typesets (pdflatex has no text glyph for σ or ∂).
_LATEX_UNICODE = {chr(0x3B1 + k): "\\ensuremath{\\%s}" % name for k, name in enumerate(_GREEK_NAMES) if name != "omicron"}
_LATEX_UNICODE.update({"ο": "o", "ς": "\\ensuremath{\\varsigma}", "ϑ": "\\ensuremath{\\vartheta}",
                       "ϕ": "\\ensuremath{\\phi}", "ε": "\\ensuremath{\\varepsilon}", "ϵ": "\\ensuremath{\\epsilon}"})
for _upper, _name in (("Γ", "Gamma"), ("Δ", "Delta"), ("Θ", "Theta"), ("Λ", "Lambda"), ("Ξ", "Xi"), ("Π", "Pi"),
                      ("Σ", "Sigma"), ("Υ", "Upsilon"), ("Φ", "Phi"), ("Ψ", "Psi"), ("Ω", "Omega")):
    _LATEX_UNICODE[_upper] = "\\ensuremath{\\%s}" % _name
for _upper, _latin in zip("ΑΒΕΖΗΙΚΜΝΟΡΤΧ", "ABEZHIKMNOPTX"):
    _LATEX_UNICODE[_upper] = _latin
_LATEX_UNICODE.update({
    "∂": r"\ensuremath{\partial}", "∇": r"\ensuremath{\nabla}", "⊙": r"\ensuremath{\odot}", "∘": r"\ensuremath{\circ}",
    "⊘": r"\ensuremath{\oslash}", "′": r"\ensuremath{'}", "″": r"\ensuremath{''}", "−": r"\ensuremath{-}",
    "×": r"\ensuremath{\times}", "·": r"\ensuremath{\cdot}", "÷": r"\ensuremath{\div}", "±": r"\ensuremath{\pm}",
    "→": r"\ensuremath{\to}", "←": r"\ensuremath{\leftarrow}", "⇒": r"\ensuremath{\Rightarrow}",
    "↦": r"\ensuremath{\mapsto}", "≤": r"\ensuremath{\le}", "≥": r"\ensuremath{\ge}", "≠": r"\ensuremath{\ne}",
    "≈": r"\ensuremath{\approx}", "≡": r"\ensuremath{\equiv}", "∈": r"\ensuremath{\in}", "∉": r"\ensuremath{\notin}",
    "∑": r"\ensuremath{\sum}", "∏": r"\ensuremath{\prod}", "∫": r"\ensuremath{\int}", "√": r"\ensuremath{\surd}",
    "∞": r"\ensuremath{\infty}", "‖": r"\ensuremath{\|}", "⊤": r"\ensuremath{\top}", "ᵀ": r"\ensuremath{^{T}}",
    "⊗": r"\ensuremath{\otimes}", "⊕": r"\ensuremath{\oplus}", "∀": r"\ensuremath{\forall}",
    "∃": r"\ensuremath{\exists}", "ℝ": r"\ensuremath{\mathbb{R}}", "𝟙": r"\ensuremath{\mathbb{1}}",
    "…": r"\ldots{}", "⋯": r"\ensuremath{\cdots}", "ℓ": r"\ensuremath{\ell}",
    "—": "---", "–": "--", "‘": "`", "’": "'", "“": "``", "”": "''", "•": r"\textbullet{}",
})
for _k, _digit in enumerate("⁰¹²³⁴⁵⁶⁷⁸⁹"):
    _LATEX_UNICODE[_digit] = "\\ensuremath{^{%d}}" % _k
for _k, _digit in enumerate("₀₁₂₃₄₅₆₇₈₉"):
    _LATEX_UNICODE[_digit] = "\\ensuremath{_{%d}}" % _k


def _typesets(ch: str, cjk: bool) -> bool:
    """Characters the documents' fonts have: ASCII, Latin-1 and Latin Extended-A (T1 fonts, and Latin
    Modern under XeLaTeX), CJK and full-width forms when the document loads a CJK font (ctex)."""
    code = ord(ch)
    if code < 0x17F and (code >= 0xA0 or 32 <= code < 127):
        return True
    return cjk and (0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF
                    or 0x3000 <= code <= 0x303F)


def latex_text(text: str, cjk: bool = False) -> str:
    """Plain text made safe for LaTeX text mode: every special character escaped; Greek letters and
    mathematical signs written as math; a character no font here has written as its code point
    ([U+1F600]), so every document compiles with no missing glyph. cjk: the document loads a CJK font."""
    out = []
    for ch in str(text):
        if ch in _LATEX_SPECIALS:
            out.append(_LATEX_SPECIALS[ch])
        elif ch in _LATEX_UNICODE:
            out.append(_LATEX_UNICODE[ch])
        elif ch in "\n\t":
            out.append(" ")
        elif _typesets(ch, cjk):
            out.append(ch)
        else:
            out.append(r"\texttt{[U+%04X]}" % ord(ch))
    return "".join(out)


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
