"""The bounds verify keeps on work done for user input, and its numeric tolerances."""
TRIALS = 3
LATEX_NAMES = {"hat_y": r"\hat{y}", "y_out": r"y_{\mathrm{out}}", "bold_delta": r"\boldsymbol{\delta}",
               "ones": r"\mathbf{1}"}     # claim names that are not plain letters -> how to write them
MAX_SEEDS = 40             # instances tried in search of ones where the truth is not zero
RTOL, ATOL = 1e-6, 1e-9
MAX_TERMS = 2_000          # nodes in a claim: beyond this it is refused
MAX_DIAGNOSE_TERMS = 300   # the mutation search tries O(nodes) changes, each O(nodes)
MAX_PAIR_TERMS = 60        # two slips at once are looked for in claims up to this size,
MAX_PAIR_TRIALS = 5000     # with at most this many pairs tried
MAX_PAIR_SECONDS = 0.6     # and for at most this long (a student waits for the answer)
MAX_SUM = 10_000           # the largest range a sum may run over
MAX_SUM_WORK = 200_000     # the terms nested sums may add up to, together
SIZE_GUESS = 10            # a sum up to a size (n_1, m) runs over a small concrete size when judged
MAX_DERIVATION_LINES = 400
