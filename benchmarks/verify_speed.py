"""How right and how fast `derive verify` is on the corpus in tests/verify_corpus/.

Accuracy: the verdict, the diagnosis word and (for derivations) the first wrong line against the answers
written by hand. Speed: every case in process (the network derived once per example, as a library user
would), and from the command line as a student runs it (a new process each time, the network derived
each time), beside the peer floor measured in the same run: a process that only starts Python and imports
derive's command line and SymPy. Medians, because the machines are noisy.

    python benchmarks/verify_speed.py            # every derivation and every 4th claim from the command line
    python benchmarks/verify_speed.py --all-cli  # every case from the command line
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "verify_corpus"
EXAMPLES = ROOT / "examples"


def load(names):
    return [case for name in names for case in yaml.safe_load((CORPUS / name).read_text())]


def cli(args) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "derive.cli", "verify", *args], capture_output=True, text=True, timeout=120)
    return time.perf_counter() - start


def summary(times: list[float]) -> str:
    times = sorted(times)
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    return f"median {statistics.median(times):6.3f} s  p90 {p90:6.3f} s  max {times[-1]:6.3f} s  (n={len(times)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--all-cli", action="store_true", help="time every case from the command line")
    options = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from derive import load as load_spec
    from derive.engine import derive
    from derive.verify import verify_claim, verify_derivation

    claims = load(["claims.yaml", "student_claims.yaml"])
    derivations = load(["derivations.yaml", "student_derivations.yaml"])
    results = {}

    def result(example):
        if example not in results:
            results[example] = derive(load_spec(EXAMPLES / f"{example}.yaml"), levels=("matrix",))
        return results[example]

    verdicts = words = 0
    claim_times, wrong_called_correct = [], []
    for case in claims:
        res = result(case["example"])
        start = time.perf_counter()
        verdict = verify_claim(res, case["param"], case["claim"])
        claim_times.append(time.perf_counter() - start)
        verdicts += verdict.verdict == case["verdict"]
        words += verdict.verdict == case["verdict"] and case.get("diagnosis", "") in verdict.explanation
        if verdict.verdict == "correct" and case["verdict"] != "correct":
            wrong_called_correct.append(case["claim"])
    d_verdicts = d_lines = d_words = 0
    derivation_times, lengths = [], []
    for case in derivations:
        text = (CORPUS / "derivations" / f"{case['file']}.tex").read_text()
        start = time.perf_counter()
        verdict = verify_derivation(result(case["example"]), text)
        derivation_times.append(time.perf_counter() - start)
        lengths.append(len(verdict.lines))
        d_verdicts += verdict.verdict == case["verdict"]
        d_lines += verdict.verdict == case["verdict"] and verdict.first_wrong_line == case.get("line")
        d_words += verdict.verdict == case["verdict"] and case.get("diagnosis", "") in verdict.explanation

    floor = [0.0] * 5
    for k in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import derive.cli, sympy, numpy"], check=True)
        floor[k] = time.perf_counter() - start
    sampled = claims if options.all_cli else claims[::4]
    cli_claims = [cli([str(EXAMPLES / f"{c['example']}.yaml"), "--param", c["param"], "--claim", c["claim"]])
                  for c in sampled]
    cli_derivations = [cli([str(EXAMPLES / f"{d['example']}.yaml"), "--derivation",
                            str(CORPUS / "derivations" / f"{d['file']}.tex")]) for d in derivations]
    ten = [t for t, n in zip(cli_derivations, lengths) if n >= 10]

    n, m = len(claims), len(derivations)
    print(f"corpus: {n} claims ({sum(c['verdict'] != 'correct' for c in claims)} wrong), {m} derivations "
          f"({sum(d['verdict'] != 'correct' for d in derivations)} wrong)")
    print(f"claims:      verdict right {verdicts}/{n} ({verdicts / n:.1%}), diagnosis word too {words}/{n} "
          f"({words / n:.1%}); wrong claims called correct: {len(wrong_called_correct)}")
    print(f"derivations: verdict right {d_verdicts}/{m} ({d_verdicts / m:.1%}), first wrong line right "
          f"{d_lines}/{m} ({d_lines / m:.1%}), diagnosis word too {d_words}/{m} ({d_words / m:.1%})")
    print(f"in process, claim:       {summary(claim_times)}")
    print(f"in process, derivation:  {summary(derivation_times)}")
    print(f"peer floor (python -c 'import derive.cli, sympy, numpy'): median {statistics.median(floor):.3f} s")
    print(f"command line, claim:      {summary(cli_claims)}  = {statistics.median(cli_claims) / statistics.median(floor):.1f}x the floor")
    print(f"command line, derivation: {summary(cli_derivations)}  = "
          f"{statistics.median(cli_derivations) / statistics.median(floor):.1f}x the floor")
    if ten:
        print(f"command line, derivations of 10+ equalities: {summary(ten)}")
    print("targets: a claim <= 1 s, a 10-line derivation <= 2 s from the command line: "
          f"{'met' if max(cli_claims) <= 1 and (not ten or max(ten) <= 2) else 'NOT met'} at the maximum, "
          f"{'met' if statistics.median(cli_claims) <= 1 and (not ten or statistics.median(ten) <= 2) else 'NOT met'}"
          " at the median")
    for claim in wrong_called_correct:
        print("  wrong claim called correct:", claim)


if __name__ == "__main__":
    main()
