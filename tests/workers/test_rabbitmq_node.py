"""The private RabbitMQ node the tests and drills run (`workers.celery.brokers.rabbitmq.server_command`,
`tests.rabbitmq_server`): private in every way that matters, and gone without a trace when closed —
no Erlang VM, no helper, no epmd left, and the system's own node and epmd untouched."""

from __future__ import annotations

import stat
from pathlib import Path

import psutil

from tests.rabbitmq_server import leftovers, rabbitmq_node


def system_erlang() -> set[int]:
    """The shared RabbitMQ's Erlang processes, if one runs here (the system's `rabbitmq` user's: other
    tests' private nodes, started and stopped meanwhile, are not looked at)."""
    return {
        p.pid
        for p in psutil.process_iter(["name", "username"])
        if p.info["name"] in ("beam.smp", "epmd") and p.info["username"] == "rabbitmq"
    }


def test_a_private_node_answers_on_its_own_port_and_leaves_nothing_when_closed(tmp_path: Path) -> None:
    before = system_erlang()
    with rabbitmq_node(tmp_path) as node:
        assert ":5672/" not in node.url  # never the shared server's port
        assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / ".erlang.cookie").stat().st_mode) == 0o400
        password = node.url.split(":")[2].partition("@")[0]
        assert password not in " ".join(node.command)  # in its 0600 config file, not on a command line
        names = {process.name() for process in node.node_processes()}
        assert "beam.smp" in names
        assert node.epmd(), "the node should run an epmd of its own, on its private port"
        pids = node.pids()
        print(f"\n[rabbitmq node] started in {node.start_s:.1f} s")
    assert leftovers(node, pids) == []
    assert before <= system_erlang(), "a process of the system's Erlang went away"
