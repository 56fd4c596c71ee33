"""The CLI's words to its user: help on every option and argument, command summaries that are never
cut, the graph's --at values checked all at once, and parse errors in the user's terms (what was
found, what was expected in words, the column and a caret under it; never a lark terminal name)."""
from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from derive.claim import VOCABULARY as CLAIM_WORDS, _PARSER as CLAIM_PARSER, parse_claim
from derive.cli import main
from derive.errors import DeriveError, InputSyntaxError
from derive.expr import VOCABULARY as EXPRESSION_WORDS, _PARSER as EXPRESSION_PARSER, parse
from derive.graph import build, parse_point


def _commands(group: click.Group, prefix=()):
    """(path, command) for every command under the group, subcommands of subgroups included."""
    for name, command in sorted(group.commands.items()):
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def _run(*args, **extra):
    result = CliRunner().invoke(main, list(args), prog_name="derive", **extra)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result


# ------------------------------------------------------------------------------------------- help

COMMANDS = list(_commands(main))


def test_the_walk_finds_every_command():
    assert {path[0] for path, _ in COMMANDS} >= {"build", "check", "codegen", "demo", "examples", "graph", "verify"}


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_option_and_argument_has_a_one_line_help(path, command):
    for param in command.params:
        text = (getattr(param, "help", None) or "").strip()
        assert text, f"derive {' '.join(path)}: {param.human_readable_name} has no help"
        assert "\n" not in text and len(text) < 300, f"derive {' '.join(path)}: {param.name}: one line, please"


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_answers_dash_h_with_its_arguments_and_options(path, command):
    result = _run(*path, "-h")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: derive {' '.join(path)}")
    flat = "".join(result.output.split())                # wrapping may break a line at a hyphen
    for param in command.params:
        assert "".join(param.help.split()) in flat, param.name
    if any(isinstance(p, click.Argument) for p in command.params):
        assert "\nArguments:\n" in result.output


def _summary(command: click.Command) -> str:
    """The first sentence of the docstring (or the short help), as a reader should see it whole."""
    if command.short_help:
        return " ".join(command.short_help.split())
    paragraph = " ".join(command.help.split("\n\n")[0].split())
    match = re.match(r".*?\.(?=\s|$)", paragraph)
    return match.group(0) if match else paragraph


@pytest.mark.parametrize("width", [None, 60, 40])
def test_the_command_list_shows_every_summary_whole(width):
    extra = {} if width is None else {"terminal_width": width, "max_content_width": width}
    result = _run("-h", **extra)
    assert result.exit_code == 0, result.output
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands and "…" not in commands
    flat = "".join(commands.split())                     # wrapping may break a line at a hyphen
    for name, command in main.commands.items():
        if not command.hidden:
            assert name + "".join(_summary(command).split()) in flat, name


def test_a_long_summary_is_wrapped_not_cut():
    group = type(main)(name="g")

    @group.command("long")
    def long_command():
        """A summary far longer than forty-five characters, which click would cut short with dots at the end."""

    result = CliRunner().invoke(group, ["--help"], terminal_width=50, max_content_width=50)
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands
    assert "cut short with dots at the end." in " ".join(commands.split())


def test_dash_h_is_help_everywhere():
    assert _run("-h").exit_code == 0 and "Commands:" in _run("-h").output
    assert _run("examples", "-h").output.startswith("Usage: derive examples")


# --------------------------------------------------------------------------- graph: the --at values

def _graph(*args):
    result = _run("graph", *args)
    assert "Traceback" not in result.output
    return result


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("derive: error")]


def test_every_missing_variable_is_named_at_once_sorted():
    result = _graph("w10*x10 + w2*x2 + w0*x0 + b", "--at", "x0=1")
    assert result.exit_code == 2
    assert _errors(result.output) == ["derive: error: no value for b, w0, w2, w10, x2, x10 "
                                      "(give each with --at NAME=NUMBER)"]


def test_values_for_variables_the_expression_does_not_have_are_flagged():
    result = _graph("x*y", "--at", "x=1", "--at", "y=2", "--at", "z=3")
    assert result.exit_code == 2
    assert _errors(result.output) == ["derive: error: --at z=3: the expression has no variable z; its variables "
                                      "are x, y"]
    result = _graph("x", "--at", "x=1", "--at", "z=3", "--at", "q=-2.5")
    assert result.exit_code == 2
    assert "--at q=-2.5, --at z=3: the expression has no variables q, z; its variables are x" in result.output


def test_missing_and_unused_are_reported_together_in_one_message():
    result = _graph("w0*x0 + w1*x1", "--at", "x0=1", "--at", "z=3", "--at", "x1=2")
    assert result.exit_code == 2
    assert len(_errors(result.output)) == 1
    assert "no value for w0, w1 (give each with --at NAME=NUMBER)" in result.output
    assert "--at z=3: the expression has no variable z; its variables are w0, w1, x0, x1" in result.output


def test_a_variable_given_twice_is_an_error_that_names_it():
    result = _graph("x + y", "--at", "x=1", "--at", "y=2", "--at", "x=5")
    assert result.exit_code == 2
    assert _errors(result.output) == ["derive: error: --at gives x more than once (x=1, x=5); give each variable "
                                      "one value"]
    with pytest.raises(DeriveError, match=r"w0 more than once \(w_0=1, w0=2\)"):
        parse_point(["w_0=1", "w0=2"])        # two spellings of one variable


def test_the_library_checks_the_point_the_same_way():
    with pytest.raises(DeriveError, match=r"no value for y, z"):
        build("x*y*z", {"x": 1.0})
    assert build("x*y", {"x": 2.0, "y": 3.0}).nodes[-1].value == 6.0


def test_the_graph_message_from_a_shell():
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "graph", "a*b + c", "--at", "a=1", "--at", "d=2"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == ["derive: error: the values given with --at do not fit the expression:",
                                        "  no value for b, c (give each with --at NAME=NUMBER)",
                                        "  --at d=2: the expression has no variable d; its variables are a, b, c"]


# ------------------------------------------------------------------------------------ parse errors

LOWERCASE_LARK = ("lpar", "rpar", "lsqb", "rsqb", "lbrace", "rbrace", "$end", "circumflex", "ampersand", "morethan",
                  "dotstar", "oslash", "expected one of")


def _no_lark_names(message: str):
    """No terminal name of either grammar, as lark spells it (LPAR, BMATRIX_BEGIN, __ANON_0) or lowered as
    the old messages printed them (bmatrix_begin, lpar, $end)."""
    names = {t.name for p in (CLAIM_PARSER, EXPRESSION_PARSER) for t in p.terminals} | {"$END"}
    for name in names:
        assert not re.search(rf"(?<![A-Za-z]){re.escape(name)}(?![A-Za-z])", message), (name, message)
        if "_" in name:
            assert name.lower() not in message, (name, message)
    for word in LOWERCASE_LARK:
        assert not re.search(rf"(?<![A-Za-z\\]){re.escape(word)}(?![A-Za-z])", message, re.IGNORECASE), (word, message)
    assert not re.search(r"\b[A-Z]{3,}(_[A-Z0-9]+)*\b", message), message


def _error(parser, text: str) -> InputSyntaxError:
    with pytest.raises(InputSyntaxError) as info:
        parser(text)
    message = str(info.value)
    _no_lark_names(message)
    return info.value


def _caret(message: str) -> tuple[int, str]:
    """(index in the shown line, the character above the caret)."""
    shown, caret = message.split("\n")[-2:]
    assert set(caret.strip()) == {"^"} and caret.startswith("  ")
    index = caret.index("^")
    return index - 2, shown[index] if index < len(shown) else None


@pytest.mark.parametrize("parser,text,column,char,words", [
    # an unexpected character
    (parse_claim, r"\delta^{2} $ a", 12, "$",
     "found '$' where a term (a symbol, a number, a function or '('), an operator (+ - \\cdot * \\odot ^T) or the "
     "end of the claim was expected"),
    (parse, "x ? y", 3, "?", "found '?' where a term (a number, a variable, a function or '('), an operator "
                             "(+ - * / ^) or the end of the expression was expected"),
    # an unexpected token
    (parse, "x + * y", 5, "*", "found '*' where a term (a number, a variable, a function or '(') was expected"),
    (parse_claim, "[j = ]", 6, "]", "found ']' where a symbol such as \\delta^{2} or a number was expected"),
    (parse_claim, r"\delta^{2} \odot \odot a", 18, "\\", "found '\\odot' where a term"),
    (parse, "max(x y)", 8, ")", "found ')' where a term (a number, a variable, a function or '('), an operator "
                                "(+ - * / ^) or a comma ',' was expected"),
    # an unexpected end
    (parse_claim, r"\delta^{2} +", 13, None, "found the end of the claim where a term (a symbol, a number, a "
                                             "function or '(') was expected"),
    (parse, "2 ^", 4, None, "found the end of the expression where a term"),
    # brackets and braces that do not balance
    (parse_claim, r"\delta^2 )x", 10, ")", "found ')', which closes nothing (no '(' is open before it)"),
    (parse_claim, r"\delta^{2} (a^{1})^T)", 21, ")", "closes nothing"),
    (parse_claim, r"\frac{a}{b", 9, "{", "the '{' here is never closed (the claim ends before its '}')"),
    (parse_claim, r"\frac{a}{b}}", 12, "}", "found '}', which closes nothing (no '{' is open before it)"),
    (parse_claim, r"(a^{1}]", 7, "]", "found ']' where ')' should close the '(' at column 1"),
    (parse_claim, r"\left( \delta^{2} (a^{1})^T", 1, "\\", "the '\\left(' here is never closed (the claim ends "
                                                           "before its '\\right)')"),
    (parse_claim, r"\delta^{2} \right)", 12, "\\", "found '\\right)', which closes nothing (no '\\left(' is open"),
    (parse_claim, r"\begin{bmatrix} 1 & 2", 1, "\\", "the '\\begin{bmatrix}' here is never closed (the claim ends "
                                                     "before its '\\end{bmatrix}')"),
    (parse, r"\left( x + 1", 1, "\\", "the '\\left(' here is never closed (the expression ends before its '\\right)')"),
    (parse, r"x \right)", 3, "\\", "found '\\right)', which closes nothing (no '\\left(' is open before it)"),
    (parse, "(x + y", 1, "(", "the '(' here is never closed"),
    (parse, "x + y)", 6, ")", "found ')', which closes nothing"),
    (parse, "(x]", 3, "]", "found ']' where ')' should close the '(' at column 1"),
])
def test_parse_errors_say_where_what_was_found_and_what_was_expected(parser, text, column, char, words):
    error = _error(parser, text)
    message = str(error)
    what = "claim" if parser is parse_claim else "expression"
    assert message.startswith(f"the {what} could not be read at column {column}: ")
    assert error.column == column
    assert words in message.split("\n")[0]
    index, above = _caret(message)
    assert index == column - 1
    if char is None:                                   # the end: the caret just after the last character
        assert index == len(text.rstrip())
    else:
        assert above == char and text[column - 1] == char


def test_every_terminal_of_both_grammars_is_described_in_words():
    for parser, vocabulary in ((CLAIM_PARSER, CLAIM_WORDS), (EXPRESSION_PARSER, EXPRESSION_WORDS)):
        for terminal in parser.terminals:
            if terminal.name.startswith("__IGNORE"):
                continue
            key = terminal.name if terminal.name in vocabulary.words else terminal.pattern.value
            assert key in vocabulary.words, f"{vocabulary.what}: no words for {terminal.name} ({terminal.pattern})"
        assert vocabulary.term_starts <= set(vocabulary.words) and vocabulary.operators <= set(vocabulary.words)


def test_the_column_is_the_users_column_after_unicode_is_rewritten():
    error = _error(parse_claim, "δ² ) x")            # δ² is read as \delta^{2}: the caret still sits under ')'
    assert error.column == 4 and _caret(str(error)) == (3, ")")
    error = _error(parse, "σ(x)) + 1")
    assert error.column == 5 and _caret(str(error)) == (4, ")")


def test_a_long_line_is_shown_as_a_window_around_the_caret():
    text = " + ".join([r"\delta^{2}"] * 40) + " )"
    error = _error(parse_claim, text)
    assert error.column == len(text)
    shown = str(error).split("\n")[1]
    assert len(shown) < 90 and shown.lstrip().startswith("…")
    assert _caret(str(error))[1] == ")"


def test_control_characters_are_not_echoed():
    error = _error(parse, "x\x1b[2J + 1")
    assert "\x1b" not in str(error) and "control character U+001B" in str(error)
    assert _caret(str(error)) == (1, "?")


def test_an_unknown_function_and_an_empty_text_are_told_plainly():
    error = _error(parse, "x + foo(x)")
    assert error.column == 5 and "unknown function 'foo'" in str(error) and _caret(str(error)) == (4, "f")
    assert str(_error(parse, "  ")) == "the expression is empty"
    assert str(_error(parse_claim, "")) == "the claim is empty"


def test_verify_shows_the_claim_error_with_its_caret(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "verify", "seed004_mlp_column", "--param", "W1",
                           "--claim", r"\delta^2 )x"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "unparseable: the claim could not be read at column 10: found ')', which closes nothing (no '(' is open "
        "before it)",
        r"  \delta^2 )x",
        "           ^"]


def test_verify_counts_columns_from_the_start_of_a_claim_with_its_left_side(tmp_path):
    claim = r"\frac{\partial L}{\partial W^{1}} = \delta^{1} (a^{0}"
    proc = subprocess.run([sys.executable, "-m", "derive.cli", "verify", "seed004_mlp_column", "--param", "W1",
                           "--claim", claim, "--json"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    import json

    diagnosis = json.loads(proc.stdout)["diagnosis"]
    assert proc.returncode == 2
    column = claim.index("(a^{0}") + 1
    assert diagnosis.startswith(f"the claim could not be read at column {column}: the '(' here is never closed")
    assert diagnosis.split("\n")[1] == "  " + claim
    assert _caret(diagnosis) == (column - 1, "(")


def test_graph_shows_the_expression_error_with_its_caret():
    result = _graph("1/(1+exp(-x)", "--at", "x=1")
    assert result.exit_code == 2
    assert result.output.splitlines()[-3:] == [
        "derive: error: the expression could not be read at column 3: the '(' here is never closed (the expression "
        "ends before its ')')",
        "  1/(1+exp(-x)",
        "    ^"]
