"""derive's own files (templates, the built-in example specs), read through importlib.resources so
that an installed wheel, a zip and a source checkout behave the same."""
from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def templates() -> Traversable:
    return resources.files("derive.templates")


def template_source(name: str) -> str | None:
    """The text of a template ('steps/define.tex.j2'), or None when there is none of that name."""
    if not name or any(part in ("", ".", "..") for part in name.split("/")):
        return None
    ref = templates().joinpath(*name.split("/"))
    return ref.read_text(encoding="utf-8") if ref.is_file() else None


def example_names() -> list[str]:
    return sorted(ref.name.removesuffix(".yaml") for ref in resources.files("derive.examples").iterdir()
                  if ref.name.endswith(".yaml"))


def example_text(name: str) -> str | None:
    """The YAML of a built-in example, or None when there is no example of that name."""
    if name not in example_names():
        return None
    return resources.files("derive.examples").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
