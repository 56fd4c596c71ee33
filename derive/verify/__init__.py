"""Judging a claimed gradient formula, or a multi-line derivation, against the engine.

Claims are read by our own grammar (claim.py), their symbols resolved through the spec's notation
(symbols.py), evaluated at several random instances (values.py; several concrete sizes when sizes
are symbolic) and compared with the true value (judging.py). When a claim is wrong, single changes
of it are tried (slips.py: sign, constant, transpose, order, ⊙ against a matrix product, layer,
index, a missing σ'); the one that makes it right is the diagnosis. derivation.py reads a chain of
equalities, feedback.py writes the marked-up document.
"""
from .derivation import verify_derivation
from .feedback import feedback_document, printed_fix, read_claim, term_latex, written_rows
from .judging import judge, verify_claim
from .symbols import Meaning, free_letters, mixed_message, subterms, target
from .values import evaluate, value_of
from .verdict import ShapeError, Verdict

__all__ = ["Meaning", "ShapeError", "Verdict", "evaluate", "feedback_document", "free_letters", "judge",
           "mixed_message", "printed_fix", "read_claim", "subterms", "target", "term_latex", "value_of",
           "verify_claim", "verify_derivation", "written_rows"]
