"""The document in other forms: Markdown, standalone HTML (MathML), Beamer slides, a body to \\input.

All of them start from the one LaTeX document the templates write (render.render_document, with
each step's justification as a paragraph of its own: `flow=True`), so prose lives in the templates
alone. The translation knows exactly the LaTeX those templates write; anything else is an error
(the tests render every example in both languages), never silently dropped.
"""
from __future__ import annotations

import html
import re

from .errors import DeriveError

FORMATS = ("tex", "pdf", "md", "html", "beamer", "body")


class FormatError(DeriveError):
    pass


# ------------------------------------------------------------------------- prose
_TEXT_COMMANDS = (          # LaTeX text commands of the templates -> Markdown
    (re.compile(r"\\textbf\{([^{}]*)\}"), r"**\1**"),
    (re.compile(r"\\emph\{([^{}]*)\}"), r"*\1*"),
    (re.compile(r"\\texttt\{([^{}]*)\}"), r"`\1`"),
    (re.compile(r"\\ldots\{\}|\\ldots\b"), "…"),
    (re.compile(r"\\ensuremath\{((?:[^{}]|\{[^{}]*\})*)\}"), r"$\1$"),
    (re.compile(r"\\(?:textbackslash)\{\}"), "\\\\"),
    (re.compile(r"\\textasciitilde\{\}"), "~"),
    (re.compile(r"\\textasciicircum\{\}"), "^"),
    (re.compile(r"\\([&%$#_{}])"), r"\1"),
)
_MATH = re.compile(r"(\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\))", re.S)


def md_prose(text: str) -> str:
    """A paragraph of the templates' LaTeX prose as Markdown: math kept ($…$), text commands mapped."""
    out = []
    for n, piece in enumerate(_MATH.split(str(text))):
        if n % 2:
            out.append("$" + piece[2:-2] + "$" if piece.startswith("\\(") else piece)
            continue
        for pattern, replacement in _TEXT_COMMANDS:
            piece = pattern.sub(replacement, piece)
        leftover = re.search(r"\\[A-Za-z]+", re.sub(r"\$[^$]*\$", "", piece))     # \ensuremath became $...$
        if leftover:
            raise FormatError(f"cannot write the LaTeX command {leftover.group()} as Markdown (in {piece.strip()[:80]!r})")
        out.append(piece)
    return "".join(out).strip()


# ------------------------------------------------------------------------- the body
def document_body(tex: str) -> str:
    start, end = tex.find(r"\begin{document}"), tex.rfind(r"\end{document}")
    if start < 0 or end < 0:
        raise FormatError("not a LaTeX document written by derive (no \\begin{document})")
    return tex[start + len(r"\begin{document}"):end].replace(r"\maketitle", "").strip() + "\n"


def body_tex(tex: str, lang: str) -> str:
    """The document without preamble, for \\input into existing notes."""
    needs = r"\usepackage{amsmath,amssymb,booktabs,longtable}" + (" and the ctex class or package" if lang == "zh" else "")
    macros = ("\\providecommand{\\stepnote}[1]{\\tag*{\\small #1}}  % a step's note, beside its equation\n"
              "\\providecommand{\\also}{\\qquad}  % a second equation on the same line\n")
    return f"% Written by derive: the body of a document, for \\input. It needs {needs}.\n" + macros + document_body(tex)


_BLOCK = re.compile(
    r"\\begin\{(?P<env>align\*|itemize|longtable|tabular|equation\*)\}(?P<arg>\{[^}]*\})?(?P<inner>.*?)\\end\{(?P=env)\}"
    r"|\\\[(?P<display>.*?)\\\]"
    r"|\\(?P<level>section|subsection)\{(?P<title>(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}"
    r"|\\appendix", re.S)


def _table(inner: str) -> str:
    rows = []
    for raw in re.split(r"\\\\", inner):
        raw = re.sub(r"\\(toprule|midrule|bottomrule|endhead)", "", raw).strip()
        if raw:
            rows.append([md_prose(cell.strip()) for cell in raw.split("&")])
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    lines = ["| " + " | ".join(rows[0] + [""] * (width - len(rows[0]))) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows[1:]]
    return "\n".join(lines)


_LAYOUT_ONLY = re.compile(r"(?<!\\)%.*$|\\begin\{(center|minipage)\}(\{[^}]*\})?|\\end\{(center|minipage)\}"
                          r"|\\setlength\{[^}]*\}\{[^}]*\}|\\nopagebreak|\\clearpage", re.M)


def _display(math: str) -> str:
    # beside-notes and second equations as the Markdown renderers lay them out
    math = re.sub(r"\\stepnote\{\$([^$]*)\$\}", r"\\qquad (\1)", math.strip())
    math = re.sub(r"\\stepnote\{([^{}$]*)\}", r"\\qquad \\text{\1}", math)
    math = math.replace("\\also", "\\qquad")
    if ("&" in math or r"\\" in math) and not math.startswith(r"\begin{"):
        math = r"\begin{aligned}" + math + r"\end{aligned}"
    return "$$\n" + math + "\n$$"


def _paragraphs(text: str) -> list[str]:
    return [md_prose(p) for p in re.split(r"\n\s*\n", text) if p.strip()]


def markdown(tex: str, title: str, subtitle: str) -> str:
    """The document as Markdown with $…$ and $$…$$ math (GitHub, MkDocs, Jupyter Book; KaTeX and MathJax)."""
    body = _LAYOUT_ONLY.sub("", document_body(tex))       # comments, page layout: nothing to show
    out = [f"# {_plain_title(title)}", "", f"*{subtitle}*", ""]
    position = 0
    for match in _BLOCK.finditer(body):
        out += _paragraphs(body[position:match.start()])
        position = match.end()
        if match.group("level"):
            hashes = "##" if match.group("level") == "section" else "###"
            out.append(f"{hashes} {md_prose(match.group('title'))}")
        elif match.group("display") is not None:
            out.append(_display(match.group("display")))
        elif match.group("env") in ("align*", "equation*"):
            out.append(_display(match.group("inner")))
        elif match.group("env") == "itemize":
            items = [i.strip() for i in match.group("inner").split(r"\item") if i.strip()]
            out.append("\n".join("- " + md_prose(" ".join(i.split())) for i in items))
        elif match.group("env") in ("longtable", "tabular"):
            out.append(_table(match.group("inner")))
    out += _paragraphs(body[position:])
    text = "\n\n".join(block for block in out if block.strip())
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def _plain_title(title: str) -> str:
    """User text in a heading: no HTML gets through, and no line break ends the heading."""
    return html.escape(" ".join(title.split()), quote=False)


# ------------------------------------------------------------------------- HTML
def html_page(md: str, title: str, lang: str) -> str:
    """A standalone page: the Markdown rendered, math as MathML (which browsers render natively: no
    script, no fonts to fetch, works offline)."""
    from .render import environment

    return environment().get_template("page.html.j2").render(title=title, lang=lang, body=html_body(md))


def html_body(md: str) -> str:
    """The Markdown as HTML (raw HTML in it is escaped), its math as allow-listed MathML."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    parser.use(dollarmath_plugin, allow_space=True, allow_digits=True, double_inline=True,
               renderer=mathml)
    return parser.render(md)


def mathml(tex: str, options: dict | None = None) -> str:
    """The markdown-it math renderer: MathML from derive.mathml (allow-listed, so safe in a page)."""
    from .mathml import MathMLError, convert

    try:
        return convert(tex, display=bool((options or {}).get("display_mode")))
    except MathMLError as exc:
        raise FormatError(str(exc)) from None


# ------------------------------------------------------------------------- Beamer
def beamer(tex: str, title: str, subtitle: str, lang: str) -> str:
    """Slides for a lecture: a frame per subsection (one derivation, its steps breaking across frames),
    and one for what a section says before its first subsection."""
    from .render import environment

    body = document_body(tex).replace(r"\appendix", "")
    frames: list[tuple[str, str, str]] = []        # (section title, frame title, content)
    section = ""
    pieces = re.split(r"\\(section|subsection)\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}", body)
    lead = pieces[0].strip()
    if lead:
        frames.append(("", "", lead))
    for n in range(1, len(pieces), 3):
        level, heading, content = pieces[n], pieces[n + 1], pieces[n + 2].strip()
        if level == "section":
            section = heading
            frames.append((heading, heading, content))
        else:
            frames.append(("", heading, content))
    frames = [(s, t, c.replace("longtable", "tabular").replace(r"\endhead", "")) for s, t, c in frames]
    return environment().get_template("slides.tex.j2").render(title=title, subtitle=subtitle, lang=lang, frames=frames)
