"""Errors a user can cause. The CLI prints their message and exits 2, with no traceback."""


class DeriveError(Exception):
    """Base class for errors caused by user input."""

    exit_code = 2


class SpecError(DeriveError):
    """A network description is malformed: names the field, the bad value and what is accepted."""

    def __init__(self, field: str, value: object, accepted: str, where: str = ""):
        self.field, self.value, self.accepted = field, value, accepted
        place = f"{where}: " if where else ""
        super().__init__(f"{place}{field}: {value!r} is not accepted; expected {accepted}")


class InputSyntaxError(DeriveError):
    """Text the user wrote (a claim, an expression) that its grammar cannot read. The message says where
    (1-based column), what was found and what was expected, in words, and shows the text with a caret
    under the place; `problem` is the part after the column, on one line."""

    def __init__(self, message: str, column: int, line: int = 1, problem: str = ""):
        self.column, self.line, self.problem = column, line, problem
        super().__init__(message)


class TexError(DeriveError):
    """LaTeX failed; the message quotes the offending line."""


class PrintedLineError(DeriveError):
    """A line derive was about to print does not read back as a true equation: a defect of derive,
    not of the input. Nothing is written; the CLI exits 1."""

    exit_code = 1
