"""Start a force resync from a synchronous service with pika, then find the task it became.

    pip install pika
    python examples/publish_with_pika.py --from 0 --keys 1,2,3 --correlation-id order-8f3c
    ERPSYNC_PASSWORD=... python examples/publish_with_pika.py --keys 1 \\
        --api http://127.0.0.1:8080 --user tje0 --wait

The contract is docs/messages.md. Two things pika wants that aio-pika does not: the default
vhost ``/`` is written ``%2F`` in the URL (``amqp://guest:guest@host:5672/%2F``; a literal
``//`` is the vhost named empty, which the broker refuses), and publisher
confirms are switched on per channel with ``confirm_delivery()``, after which ``basic_publish``
returns once the broker confirmed and raises when it refused or could not route the message.
Only the standard library and pika are used, so the file can be copied into any service.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.request
import uuid
from typing import Any

import pika
from pika.exceptions import NackError, UnroutableError

TERMINAL = ("Succeeded", "Failed", "SucceededManualCleanup")
FIND_TASKS = "/api/v1/Agents/Batch/GetBatchTaskInfosByNameAndState"


def publish(url: str, exchange: str, command: dict[str, Any], message_id: str) -> None:
    """Publish one persistent command with publisher confirms; raises if it was not queued."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange=exchange,
            routing_key="resync",
            body=json.dumps(command).encode(),
            properties=pika.BasicProperties(
                message_id=message_id,  # keep it when you retry: the engine runs it once
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
            ),
            mandatory=True,  # unroutable (no erpsync has declared the queue yet): raises
        )
    finally:
        connection.close()


def find_task(api: str, user: str, password: str, message_id: str) -> dict[str, Any] | None:
    """The task the message became (erpsync's ``MessageId`` filter), or None while queued."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    if not api.startswith(("http://", "https://")):
        raise ValueError(f"--api must be an http(s) URL, got {api[:40]!r}")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        api.rstrip("/") + FIND_TASKS,
        data=json.dumps({"MessageId": message_id}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        tasks: list[dict[str, Any]] = json.load(response)
    return tasks[0] if tasks else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--exchange", default="erpsync", help="the broker.prefix setting")
    parser.add_argument("--from", dest="source", type=int, default=0, help="0 = the CRM")
    parser.add_argument("--keys", default="", help="comma-separated internal key ids")
    parser.add_argument("--correlation-id", help="your reference, shown on the task")
    parser.add_argument("--message-id", default=None, help="default: a new UUID")
    parser.add_argument("--api", help="erpsync's URL: look the task up (and --wait for it)")
    parser.add_argument("--user", default="tje0")
    parser.add_argument("--wait", action="store_true", help="wait until the task has ended")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    command: dict[str, Any] = {
        "ErpConnectionId": args.source,
        "InternalKeyIds": [int(key) for key in args.keys.split(",") if key.strip()],
    }
    if args.correlation_id:
        command["CorrelationId"] = args.correlation_id
    message_id = args.message_id or str(uuid.uuid4())
    try:
        publish(args.url, args.exchange, command, message_id)
    except (UnroutableError, NackError) as exc:
        print(f"not queued ({type(exc).__name__}); publish again with the same message id")
        return 1
    print(f"queued: message id {message_id}")
    if not args.api:
        return 0

    password = os.environ.get("ERPSYNC_PASSWORD", "")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        task = find_task(args.api, args.user, password, message_id)
        if task is not None and (not args.wait or task["State"] in TERMINAL):
            print(f"task {task['Id']}: {task['State']}: {task['Response']}")
            return 0 if task["State"] != "Failed" else 4
        time.sleep(0.5)
    print(f"no task for message {message_id} within {args.timeout:.0f} s (is a worker running?)")
    return 3


if __name__ == "__main__":
    sys.exit(main())
