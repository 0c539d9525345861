"""The ``if __name__ == "__main__":`` guard: a script that starts a spawn process without it fails —
the child re-imports the script, tries to start a process while still bootstrapping, and Python stops
it with a RuntimeError — and the same script with the guard works.

Under spawn a child is a fresh interpreter that imports the main script (as ``__mp_main__``) to find the
function it should run. Without the guard, that import runs the script's top level again — which starts
a process again, and so on forever; Python refuses instead: starting a process while the current one is
still bootstrapping raises RuntimeError. With the guard, the child's import skips the start-up code.
Each script runs here as its own interpreter, so you see exactly what running it would print.

Usage::

    conquer demo main-guard
    python -m demos.main_guard
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from demos.common import JOIN_TIMEOUT_S, argument_parser, heading, run, say

START_A_CHILD = """\
spawn = multiprocessing.get_context("spawn")
child = spawn.Process(target=greet)
child.start()
child.join()
print(f"parent pid {os.getpid()}: the child exited with status {child.exitcode}", flush=True)
"""


def script(guarded: bool) -> str:
    body = (
        f'if __name__ == "__main__":\n{textwrap.indent(START_A_CHILD, "    ")}' if guarded else START_A_CHILD
    )
    return (
        "import multiprocessing\nimport os\n\n\n"
        "def greet():\n"
        '    print(f"child pid {os.getpid()} says hello", flush=True)\n\n\n'
        f"{body}"
    )


def run_script(guarded: bool, folder: Path) -> subprocess.CompletedProcess[str]:
    name = "with_guard.py" if guarded else "without_guard.py"
    heading(f"{name}, run as `python {name}`")
    path = folder / name
    path.write_text(script(guarded))
    print(textwrap.indent(script(guarded), "    | ", lambda _line: True), end="")
    finished = subprocess.run(
        [sys.executable, name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=JOIN_TIMEOUT_S,
        check=False,
    )
    for line in finished.stdout.splitlines():
        print(f"    stdout: {line}")
    error_lines = finished.stderr.strip().splitlines()
    start = next(
        (i for i, line in enumerate(error_lines) if line.startswith("RuntimeError")), len(error_lines)
    )
    if error_lines:
        print(f"    stderr: ... ({start} lines of traceback from the child)")
    for line in error_lines[start:]:
        print(f"    stderr: {line}")
    say(f"`python {name}` exited with status {finished.returncode}")
    return finished


def main() -> int:
    argument_parser(__spec__.name, __doc__).parse_args()
    with tempfile.TemporaryDirectory(prefix="main-guard-") as folder:
        unguarded = run_script(False, Path(folder))
        guarded = run_script(True, Path(folder))
    refused = "RuntimeError" in unguarded.stderr and "bootstrapping phase" in unguarded.stderr
    say(f"without the guard the child was refused with RuntimeError: {refused}")
    say(f"with the guard the child said hello: {'says hello' in guarded.stdout}")
    return 0 if refused and "says hello" in guarded.stdout else 1


if __name__ == "__main__":
    run(main)
