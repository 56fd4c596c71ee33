"""LaTeX to PDF with latexmk: sandboxed, time-bounded, atomic; errors quote the offending line."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import TexError

TEX_PACKAGES = ("texlive-latex-base texlive-latex-recommended texlive-latex-extra texlive-pictures "
                "texlive-xetex texlive-lang-chinese latexmk")
TIMEOUT_SECONDS = 180
_ERROR = re.compile(r"^(?:\./)?[^:\n]+\.tex:(\d+): (.*)$", re.M)


@dataclass(frozen=True)
class PdfResult:
    path: Path
    warnings: tuple[str, ...]     # overfull boxes, missing characters


class TexMissing(TexError):
    def __init__(self):
        super().__init__("latexmk was not found, so no PDF was made (the .tex file was written). "
                         f"Install TeX with: apt-get install {TEX_PACKAGES}")


def have_tex() -> bool:
    return shutil.which("latexmk") is not None


def compile_pdf(tex_path: Path, pdf_path: Path, engine: str = "pdflatex") -> PdfResult:
    """Compile tex_path; on success replace pdf_path atomically, else leave it untouched."""
    from .files import write_atomic

    data, warnings = compile_text(Path(tex_path).read_text(encoding="utf-8"), Path(tex_path).name, engine)
    write_atomic(pdf_path, data)
    return PdfResult(Path(pdf_path), warnings)


def compile_text(text: str, name: str, engine: str = "pdflatex") -> tuple[bytes, tuple[str, ...]]:
    """The PDF of a LaTeX source (bytes) and its warnings, made in a temporary folder that is removed
    afterwards, also when the run is interrupted. `name` names the source in error messages."""
    if not have_tex():
        raise TexMissing()
    flags = "-no-shell-escape -interaction=nonstopmode -halt-on-error -file-line-error"
    with tempfile.TemporaryDirectory(prefix="derive-tex-") as work:
        work_dir = Path(work)
        source = work_dir / "document.tex"
        source.write_text(text, encoding="utf-8")
        env = {**os.environ, "openin_any": "p", "openout_any": "p", "HOME": work, "TEXMFOUTPUT": work}
        program = "-pdfxe" if engine == "xelatex" else "-pdf"
        command = ["latexmk", "-norc", program, f"-{engine}={engine} {flags} %O %S", "-silent", source.name]
        try:
            proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                                  timeout=TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise TexError(f"LaTeX took longer than {TIMEOUT_SECONDS} s on {name}; stopped") from None
        log = _read(work_dir / "document.log")
        built = work_dir / "document.pdf"
        if proc.returncode != 0 or not built.is_file():
            raise TexError(_error_message(name, text, log or proc.stdout + proc.stderr))
        return built.read_bytes(), tuple(_warnings(log))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _error_message(name: str, text: str, log: str) -> str:
    match = _ERROR.search(log)
    if not match:
        tail = "\n".join(log.strip().splitlines()[-8:])
        return f"LaTeX failed on {name}:\n{tail}"
    number, message = int(match.group(1)), match.group(2)
    lines = text.splitlines()
    quoted = lines[number - 1].strip() if 0 < number <= len(lines) else "?"
    return f"LaTeX failed on {name}, line {number}: {message}\n    {quoted}"


def _warnings(log: str) -> list[str]:
    found = [line.strip() for line in log.splitlines() if line.startswith("Overfull") or "Missing character" in line]
    return sorted(set(found), key=found.index)
