"""Dev services without starting anything: URL parsing, package checks, what `up` decides."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from engine.devservices import packages
from engine.devservices.ports import free_port
from engine.devservices.services import DevServices, broker_endpoint, database_endpoint


def test_database_endpoint_reads_host_port_user_and_database() -> None:
    endpoint = database_endpoint("postgresql://app%40x:secret@localhost:6543/erp%20sync")
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.path) == (
        "localhost",
        6543,
        "app@x",
        "erp sync",
    )
    assert endpoint.local
    assert database_endpoint("postgresql://db.example.com/erpsync").port == 5432
    assert not database_endpoint("postgresql://db.example.com/erpsync").local


def test_broker_endpoint_reads_virtual_host_and_keeps_the_password_out_of_repr() -> None:
    endpoint = broker_endpoint("amqp://sync:s3cret@127.0.0.1:5673/%2Fprod")
    assert (endpoint.user, endpoint.password, endpoint.path, endpoint.port) == (
        "sync",
        "s3cret",
        "/prod",
        5673,
    )
    assert "s3cret" not in repr(endpoint)
    default = broker_endpoint("amqp://guest:guest@127.0.0.1/")
    assert (default.path, default.port) == ("/", 5672)


def test_missing_packages_as_non_root_name_the_one_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(packages.CHECKS, "wrk", lambda: False)
    monkeypatch.setitem(packages.CHECKS, "chromium", lambda: False)
    monkeypatch.setitem(packages.CHECKS, "amqp-tools", lambda: True)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(packages.MissingPackages) as caught:
        packages.ensure(["amqp-tools", "chromium", "wrk"], print)
    message = str(caught.value)
    assert "missing system packages: chromium wrk" in message
    assert "apt-get install -y chromium wrk" in message
    assert "amqp-tools" not in message


def test_nothing_missing_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(packages.CHECKS, "wrk", lambda: True)
    said: list[str] = []
    packages.ensure(["wrk"], said.append)
    assert said == []


def test_a_remote_url_that_does_not_answer_starts_nothing(tmp_path: Path) -> None:
    said: list[str] = []
    services = DevServices(tmp_path / ".run", said.append)
    services.postgres_up(database_endpoint("postgresql://postgres@192.0.2.1:1/x"))
    assert said == [
        "PostgreSQL on 192.0.2.1:1: does not answer and is not local; not starting a private one"
    ]
    assert not (tmp_path / ".run").exists()


def test_status_and_down_with_no_private_services(tmp_path: Path) -> None:
    said: list[str] = []
    services = DevServices(tmp_path / ".run", said.append)
    assert services.status() == []
    services.down()
    assert len(said) == 1
    assert said[0].startswith("no private service is running")


def test_an_answering_local_port_is_used_as_it_is(tmp_path: Path) -> None:
    with socket.socket() as listener:
        port = free_port()
        listener.bind(("127.0.0.1", port))
        listener.listen()
        said: list[str] = []
        DevServices(tmp_path / ".run", said.append).rabbitmq_up(
            broker_endpoint(f"amqp://guest:guest@127.0.0.1:{port}/")
        )
    assert said == [f"RabbitMQ on 127.0.0.1:{port}: answers, using it"]
    assert not (tmp_path / ".run").exists()


def test_erpsync_services_and_python_m_engine_devservices_are_the_same_commands(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from engine.cli import main
    from engine.devservices.__main__ import main as devservices_main

    for group, args in ((main, ["services", "status"]), (devservices_main, ["status"])):
        result = CliRunner().invoke(group, [*args, "--run-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert result.output == f"no private services in {tmp_path}\n"
    assert set(devservices_main.commands) == {"up", "down", "status", "packages"}
