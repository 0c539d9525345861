"""RabbitMQ over TLS (`amqps://`), for real: a private node with a TLS listener whose certificate a
throw-away CA signed (made here with the `openssl` command), workers and `conquer submit --wait`
through it with that CA trusted (CONQUER_BROKER_CA_FILE), and one line with exit 3 when the
certificate is not trusted — the failure is only found by connecting, as a refused login is."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conquer.exitcodes import ExitCode
from tests.conftest import conquer, ctrl_c, one_line, wait_until
from tests.conquer.test_stack_cli import clean_env, read_until, start
from tests.conquer.test_up_rabbitmq import flower_lists
from tests.rabbitmq_server import RabbitMQNode, skip_without_rabbitmq
from tests.redis_server import redis_server
from workers.celery.brokers import rabbitmq
from workers.celery.localstack import free_port
from workers.celery.settings import Settings, mask


def openssl(*arguments: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, arguments)], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA valid for a day: (its certificate, its key)."""
    directory.mkdir()
    certificate, key = directory / "ca.pem", directory / "ca.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-keyout", key, "-out", certificate, cwd=directory)  # fmt: skip
    return certificate, key


#: The names the node's certificate holds (where the tests reach it: 127.0.0.1).
THIS_HOST = "DNS:localhost,IP:127.0.0.1"


def make_server_certificate(directory: Path, ca: tuple[Path, Path], names: str) -> tuple[Path, Path]:
    """A certificate for `names` (subjectAltName), signed by `ca`: (the certificate, its key)."""
    certificate, key, request = directory / "server.pem", directory / "server.key", directory / "server.csr"
    (directory / "san.cnf").write_text(f"subjectAltName={names}\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", request,
            cwd=directory)  # fmt: skip
    openssl("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "1",
            "-extfile", "san.cnf", "-out", certificate, cwd=directory)  # fmt: skip
    key.chmod(0o600)
    return certificate, key


class TlsNode:
    """A private node with a TLS listener, and the CA that signed its certificate."""

    def __init__(self, node: RabbitMQNode, ca: Path) -> None:
        self.node = node
        self.ca = ca
        found = re.search(r"^listeners\.ssl\.default = 127\.0\.0\.1:(\d+)$", _read(node), re.M)
        assert found, "server_command wrote no TLS listener"
        plain_port = node.url.rpartition(":")[2].rstrip("/")
        #: The node's amqps URL.
        self.url = node.url.replace("amqp://", "amqps://", 1).replace(
            f":{plain_port}/", f":{found.group(1)}/"
        )


def _read(node: RabbitMQNode) -> str:
    return (node.directory / "rabbitmq.conf").read_text()


@pytest.fixture
def tls_node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TlsNode]:
    """The node, its certificate naming THIS_HOST (or the names given as the fixture's param)."""
    skip_without_rabbitmq()
    if not shutil.which("openssl"):
        pytest.skip("no openssl command to make a throw-away CA with")
    ca = make_ca(tmp_path / "ca", "conquer throw-away CA")
    certificate, key = make_server_certificate(tmp_path / "ca", ca, getattr(request, "param", THIS_HOST))
    directory = tmp_path / "node"
    directory.mkdir(mode=0o700)
    command, url = rabbitmq.server_command(directory, tls=(ca[0], certificate, key))
    node = RabbitMQNode(directory, command, url)
    try:
        node.start()  # ready once its plain listener takes a login
        yield TlsNode(node, ca[0])
    finally:
        node.close()


@pytest.mark.timeout(180)
def test_submit_wait_over_amqps_with_the_ca_trusted(tls_node: TlsNode, tmp_path: Path) -> None:
    from workers.celery.localstack import local_stack

    (tmp_path / "backend").mkdir()
    with redis_server(tmp_path / "backend") as backend:
        settings = Settings(
            broker_url=tls_node.url,
            broker_ca_file=str(tls_node.ca),
            broker_configured=True,
            result_backend=backend.url,
            worker_concurrency=1,
        )
        with local_stack(settings, workers=1) as stack:
            env = stack.settings.to_env()
            result = conquer("submit", "sum", "1e5", "--wait", env=env)
            assert result.returncode == ExitCode.OK, result.stderr
            assert "✓ verified" in result.stdout
            listed = conquer("workers", env=env)
            assert listed.returncode == ExitCode.OK, listed.stderr
            assert stack.worker_names[0] in listed.stdout


@pytest.mark.timeout(240)
def test_up_over_amqps_starts_workers_and_flower_that_reach_the_node(
    tls_node: TlsNode, tmp_path: Path
) -> None:
    """`conquer up` passes the CA on to the workers and Flower it starts (they read the same variables),
    and all of them are stopped by Ctrl-C."""
    (tmp_path / "backend").mkdir()
    with redis_server(tmp_path / "backend") as backend:
        env = clean_env(
            CELERY_BROKER_URL=tls_node.url,
            CELERY_RESULT_BACKEND=backend.url,
            CONQUER_BROKER_CA_FILE=str(tls_node.ca),
            CONQUER_WORKER_CONCURRENCY="1",
        )
        process = start("up", "--flower-port", str(free_port()), env=env)
        started: list[psutil.Process] = []
        try:
            banner = read_until(process, "Press Ctrl-C", 120)
            started = psutil.Process(process.pid).children(recursive=True)
            assert f"broker   external RabbitMQ, {mask(tls_node.url)}" in banner, banner
            job = conquer("submit", "sum", "1e5", "--wait", env=env)
            assert job.returncode == ExitCode.OK, job.stderr
            flower = re.search(r"flower\s+(http://127\.0\.0\.1:\d+)\s+user (\S+)\s+password (\S+)", banner)
            assert flower, banner
            url, user, password = flower.groups()
            named = set(re.findall(r"^ +(conquer\d-\S+@\S+)$", banner, re.M))
            wait_until(lambda: flower_lists(url, (user, password)) == named, 30, "Flower never listed them")
        finally:
            _, stderr = ctrl_c(process, timeout=60)
        assert process.returncode == ExitCode.OK, stderr
        _, alive = psutil.wait_procs(started, timeout=15)
        assert not alive


@pytest.mark.parametrize("trusted", ["system", "another-ca"])
def test_an_untrusted_certificate_exits_3_in_one_line(
    tls_node: TlsNode, tmp_path: Path, trusted: str
) -> None:
    url = tls_node.url
    env = {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": "redis://"}
    if trusted == "another-ca":
        env["CONQUER_BROKER_CA_FILE"] = str(make_ca(tmp_path / "other", "another CA")[0])
    result = conquer("submit", "sum", "100", env=env)
    assert result.returncode == ExitCode.BROKER_UNREACHABLE, result.stderr
    line = one_line(result.stderr)
    assert f"cannot reach RabbitMQ at {mask(url)}: " in line
    assert "CERTIFICATE_VERIFY_FAILED" in line
    assert "not signed by a CA trusted here: set CONQUER_BROKER_CA_FILE" in line
    assert tls_node.node.url.partition("@")[0].rpartition(":")[2] not in result.stderr  # the password


@pytest.mark.parametrize("tls_node", ["DNS:elsewhere.invalid"], indirect=True)
def test_a_certificate_for_another_host_exits_3_even_with_its_ca_trusted(tls_node: TlsNode) -> None:
    """Signed by the trusted CA, but for another host: refused too (py-amqp alone would not check)."""
    env = {
        "CELERY_BROKER_URL": tls_node.url,
        "CELERY_RESULT_BACKEND": "redis://",
        "CONQUER_BROKER_CA_FILE": str(tls_node.ca),
    }
    result = conquer("submit", "sum", "100", env=env)
    assert result.returncode == ExitCode.BROKER_UNREACHABLE, result.stderr
    line = one_line(result.stderr)
    assert f"cannot reach RabbitMQ at {mask(tls_node.url)}: " in line
    assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in line
    assert "CONQUER_BROKER_CA_FILE" not in line  # another CA would not help


@pytest.mark.parametrize(
    ("url", "ca_file", "message"),
    [
        ("amqp://h//", "/etc/hostname", "CONQUER_BROKER_CA_FILE applies only to an amqps:// broker"),
        ("redis://h:6379/0", "/etc/hostname", "CONQUER_BROKER_CA_FILE applies only to an amqps:// broker"),
        ("amqps://h//", "/nonexistent/ca.pem", "CONQUER_BROKER_CA_FILE: cannot read /nonexistent/ca.pem"),
        (
            "amqps://h//?ssl_ca_certs=/etc/hostname",
            "",
            "TLS options cannot go in its query: set CONQUER_BROKER_CA_FILE",
        ),
    ],
    ids=["amqp", "redis", "unreadable", "in-the-url"],
)
def test_a_ca_file_that_cannot_work_exits_2_before_connecting(url: str, ca_file: str, message: str) -> None:
    env = {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": "redis://", "CONQUER_BROKER_CA_FILE": ca_file}
    result = conquer("submit", "sum", "100", env=env)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert message in one_line(result.stderr)
