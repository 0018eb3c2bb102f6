"""The ``erpsync`` command line: one module per command group, registered here.

``serve``/``api``/``worker`` (:mod:`.serve`), ``migrate``/``check-config``/``hash-password``
(:mod:`.setup`), ``demo`` (:mod:`.demo`), ``dlq`` (:mod:`.dlq`), ``connectors``
(:mod:`.connectors`), ``keys`` (the key registry's import and export, :mod:`.keys`),
``services`` (development PostgreSQL/RabbitMQ, :mod:`.services`), the operator commands
``resync``, ``tasks``, ``synclog``, ``links``, ``engine`` and ``sync-all`` (over the HTTP
API, :mod:`.client`), and
``config-reference`` (:mod:`.config_reference`). Errors are
:class:`~engine.cli.common.CliError` with the exit codes of :mod:`.common`.
"""

from __future__ import annotations

import click

from engine.cli import (
    config_reference,
    connectors,
    demo,
    dlq,
    engine,
    keys,
    links,
    resync,
    serve,
    services,
    setup,
    synclog,
    tasks,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="erpsync")
def main() -> None:
    """erpsync: SuperOffice-compatible ERP force-resync service."""


for command in (
    serve.serve,
    serve.api,
    serve.worker,
    setup.migrate,
    demo.demo,
    setup.hash_password,
    setup.check_config,
    connectors.connectors,
    keys.keys,
    services.services,
    dlq.dlq,
    resync.resync,
    tasks.tasks,
    links.links,
    synclog.synclog,
    engine.engine,
    engine.sync_all,
    config_reference.config_reference,
):
    main.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    main()
