"""
Mutants kept dead: apply each mutation of a curated list (C{scripts/mutants.toml})
to a throwaway copy of the project, run the unit tests that should catch it,
and fail if any survives.

Each mutation replaces an exact snippet of one file, found exactly once (else
the run fails naming the mutation, so the list cannot rot silently when the
code changes).  The tests run with this Python (the project's venv) from the
copy, which comes first on C{PYTHONPATH}, so no reinstall is needed.  Before
the mutants, the same tests run on an unmutated copy: a test that fails there
would "kill" every mutant.  A run that outlasts C{--timeout} counts as killed
(the mutant hangs the tests).

Usage: C{python scripts/mutants.py [--jobs N] [--list FILE] [ID ...]}; prints
C{KILLED <id> <description> by <tests>} or C{SURVIVED <id> <description>} per
mutation and the total time; exits 1 when a mutation survives or the list is
wrong.  C{make mutants} runs it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from attrs import frozen

ROOT = Path(__file__).resolve().parent.parent
#: What the unit tests need of the repository.
COPIED = ("acme_appliance", "tests", "twisted", "etc", "setup.cfg", "pyproject.toml")
IGNORED = shutil.ignore_patterns("__pycache__", "_trial_temp*", "*.pyc")
#: The line between trial's reports of failed tests, and the one after the last.
SEPARATOR = "=" * 79
SUMMARY = "-" * 79
TEST_ID = re.compile(r"[A-Za-z_][\w.]*")


class ListError(Exception):
    """
    The mutation list is wrong or out of date with the code.
    """


@frozen
class Mutation:
    """
    One change the tests must catch.
    """

    id: str
    file: str
    description: str
    original: str
    mutated: str
    tests: tuple[str, ...]

    def apply(self, tree: Path) -> None:
        """
        Change C{self.file} under C{tree}.

        @raise ListError: the snippet is not there exactly once, or the
            mutated file does not compile.
        """
        path = tree / self.file
        if not path.is_file():
            raise ListError(f"{self.id}: no file {self.file}")
        source = path.read_text()
        count = source.count(self.original)
        if count != 1:
            raise ListError(f"{self.id}: the original snippet occurs {count} times in {self.file}, not once")
        mutated = source.replace(self.original, self.mutated)
        try:
            compile(mutated, str(path), "exec")
        except SyntaxError as e:
            raise ListError(f"{self.id}: the mutated {self.file} does not compile: {e}")
        path.write_text(mutated)


@frozen
class Outcome:
    """
    What the tests said of one mutation (or of none, for the baseline).
    """

    mutation: Mutation | None
    killed: bool
    failed: tuple[str, ...]
    detail: str

    def line(self) -> str:
        assert self.mutation is not None
        m = self.mutation
        if not self.killed:
            return f"SURVIVED {m.id} {m.description} (ran {' '.join(m.tests)})"
        return f"KILLED {m.id} {m.description} by {' '.join(self.failed) or self.detail}"


def load(path: Path) -> list[Mutation]:
    """
    The mutations listed in C{path}.

    @raise ListError: an entry lacks a field or an id is repeated.
    """
    entries = tomllib.loads(path.read_text()).get("mutation", [])
    mutations = []
    for n, entry in enumerate(entries, 1):
        try:
            tests = entry["tests"]
            mutation = Mutation(
                id=str(entry["id"]),
                file=str(entry["file"]),
                description=str(entry["description"]),
                original=str(entry["original"]),
                mutated=str(entry["mutated"]),
                tests=(tests,) if isinstance(tests, str) else tuple(str(t) for t in tests),
            )
        except KeyError as e:
            raise ListError(f"mutation #{n} ({entry.get('id', '?')}): no {e.args[0]}")
        if not mutation.tests or mutation.original == mutation.mutated:
            raise ListError(f"{mutation.id}: no tests, or a mutation that changes nothing")
        mutations.append(mutation)
    ids = [m.id for m in mutations]
    if repeated := sorted({i for i in ids if ids.count(i) > 1}):
        raise ListError(f"repeated ids: {', '.join(repeated)}")
    return mutations


def failed_tests(output: str) -> tuple[str, ...]:
    """
    The ids of the failed and errored tests in trial's report.
    """
    failed: list[str] = []
    for block in output.split(SEPARATOR)[1:]:
        lines = block.split(SUMMARY)[0].strip().splitlines()
        if not lines or lines[0] not in ("[FAIL]", "[ERROR]"):
            continue
        # The ids of the tests that failed this way end the block.
        for line in reversed(lines):
            if not TEST_ID.fullmatch(line):
                break
            if line not in failed:
                failed.append(line)
    return tuple(failed)


def run_tests(tree: Path, tests: Sequence[str], timeout: float) -> tuple[int | None, str]:
    """
    Run C{tests} with trial in C{tree}: its exit status (C{None} when it
    timed out) and output.
    """
    path = [str(tree)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    command = [sys.executable, "-m", "twisted.trial", "--reporter=text", *tests]
    try:
        done = subprocess.run(
            command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        output = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode("utf-8", "replace")
        return None, output
    return done.returncode, done.stdout


def copy_tree(into: Path) -> Path:
    """
    A copy of what the tests need of the repository, under C{into}.
    """
    tree = into / "tree"
    tree.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=IGNORED)
        elif source.exists():
            shutil.copy2(source, tree / name)
    return tree


def attempt(mutation: Mutation | None, tests: Sequence[str], timeout: float) -> Outcome:
    """
    Run C{tests} on a copy changed by C{mutation} (unchanged if C{None}).
    """
    with tempfile.TemporaryDirectory(prefix="mutant-") as scratch:
        tree = copy_tree(Path(scratch))
        if mutation is not None:
            mutation.apply(tree)
        status, output = run_tests(tree, tests, timeout)
    if status is None:
        return Outcome(mutation, True, (), f"a timeout after {timeout:.0f} s")
    failed = failed_tests(output)
    tail = output.strip().splitlines()[-1:] or ["no output"]
    return Outcome(mutation, status != 0, failed, f"trial exit status {status} ({tail[0]})")


def minimal(specs: Iterable[str]) -> list[str]:
    """
    C{specs} without those inside another one (C{tests.unit.x} in C{tests.unit}).
    """
    unique = sorted(set(specs))
    return [s for s in unique if not any(s.startswith(other + ".") for other in unique)]


def check_snippets(mutations: Sequence[Mutation]) -> list[str]:
    """
    The problems of applying each mutation alone to a copy of the tree.
    """
    problems = []
    with tempfile.TemporaryDirectory(prefix="mutant-check-") as scratch:
        for mutation in mutations:
            # Fresh copies of the single file: mutations of one file are applied alone.
            target = Path(scratch) / mutation.id
            source = ROOT / mutation.file
            if source.is_file():
                (target / mutation.file).parent.mkdir(parents=True)
                shutil.copy2(source, target / mutation.file)
            try:
                mutation.apply(target)
            except ListError as e:
                problems.append(str(e))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("ids", nargs="*", help="run only these mutations")
    parser.add_argument("--list", type=Path, default=ROOT / "scripts" / "mutants.toml", help="the mutation list")
    parser.add_argument("--jobs", type=int, default=2, help="mutations tested at once (default 2)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a test run may take (default 600)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        mutations = select(load(args.list), args.ids)
    except ListError as e:
        print(f"ERROR {e}", flush=True)
        return 1
    if problems := check_snippets(mutations):
        for problem in problems:
            print(f"ERROR {problem}", flush=True)
        return 1
    if not args.no_baseline and not baseline(mutations, args.timeout):
        return 1
    survived = run_all(mutations, args.jobs, args.timeout)
    killed = len(mutations) - survived
    print(f"{killed} of {len(mutations)} mutations killed, {survived} survived, in {time.monotonic() - started:.0f} s")
    return 1 if survived else 0


def select(mutations: list[Mutation], ids: Sequence[str]) -> list[Mutation]:
    """
    The mutations named by C{ids}, or all of them.

    @raise ListError: an id is not in the list.
    """
    if unknown := sorted(set(ids) - {m.id for m in mutations}):
        raise ListError(f"no mutation {', '.join(unknown)} in the list")
    return [m for m in mutations if not ids or m.id in ids]


def baseline(mutations: Sequence[Mutation], timeout: float) -> bool:
    """
    Whether every listed test passes on the unmutated copy; says which do not.
    """
    tests = minimal(t for m in mutations for t in m.tests)
    outcome = attempt(None, tests, timeout)
    if outcome.killed:
        print(f"ERROR the tests fail without any mutation: {' '.join(outcome.failed) or outcome.detail}", flush=True)
        return False
    print(f"baseline: {' '.join(tests)} pass unmutated", flush=True)
    return True


def run_all(mutations: Sequence[Mutation], jobs: int, timeout: float) -> int:
    """
    Test every mutation, C{jobs} at a time, printing a line each as it ends;
    the number that survived.
    """
    survived = 0
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(attempt, m, m.tests, timeout) for m in mutations]
        for future in as_completed(futures):
            outcome = future.result()
            survived += not outcome.killed
            print(outcome.line(), flush=True)
    return survived


if __name__ == "__main__":
    sys.exit(main())
