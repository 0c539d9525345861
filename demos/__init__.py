"""The lessons of the processes-and-threads chapter, one small runnable module each.

Every demo is a module here that opens with a ``Usage::`` docstring and runs on its own
(``python -m demos.bank_account``) or through the CLI (``conquer demo bank-account``). Each prints which
process and thread did what. `DEMOS` lists them in the chapter's order; the one-line summary shown by
``conquer demo`` is the first line of each module's docstring, read without importing the module (some
demos import tkinter or start processes only when run).
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Demo:
    #: The module in this package, e.g. "bank_account"; the demo's name is it with hyphens.
    module: str
    #: Which lesson of the chapter it shows (the numbering of the project's issue).
    lesson: str

    @property
    def name(self) -> str:
        return self.module.replace("_", "-")

    @property
    def qualified(self) -> str:
        return f"{__name__}.{self.module}"

    @property
    def path(self) -> Path:
        spec = importlib.util.find_spec(self.qualified)
        if spec is None or spec.origin is None:
            raise LookupError(f"demo module {self.qualified} is missing")
        return Path(spec.origin)

    @property
    def docstring(self) -> str:
        return ast.get_docstring(ast.parse(self.path.read_text(encoding="utf-8"))) or ""

    @property
    def summary(self) -> str:
        return self.docstring.split("\n\n", 1)[0].replace("\n", " ").strip()


DEMOS: dict[str, Demo] = {
    demo.name: demo
    for demo in (
        Demo("start_methods", "1 start methods"),
        Demo("main_guard", "1 start methods"),
        Demo("ipc_pipe", "2 IPC"),
        Demo("ipc_queue", "2 IPC"),
        Demo("ipc_shared_memory", "2 IPC"),
        Demo("ipc_signal", "2 IPC"),
        Demo("ipc_semaphore", "2 IPC"),
        Demo("ipc_socket", "2 IPC"),
        Demo("print_lock", "3 lock around output"),
        Demo("shared_state", "4 shared state"),
        Demo("counter_trap", "4 shared state"),
        Demo("thread_subclass", "5 threading"),
        Demo("daemon_threads", "5 threading"),
        Demo("bank_account", "5 threading"),
        Demo("cpu_vs_io", "7 CPU- vs I/O-bound"),
        Demo("responsive_terminal", "8 exercise 1"),
        Demo("responsive_tk", "8 exercise 1"),
        Demo("divide_and_conquer", "9 exercise 2"),
        Demo("managers", "10 several machines"),
        Demo("hosts", "10 several machines"),
    )
}
