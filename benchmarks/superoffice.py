"""Scenario: the CRM is a fake SuperOffice WebAPI answering in L = 20 ms with a rate limit of
R = 50 calls/s (429 + Retry-After beyond it), resyncing N = 3,000 records to the two ERPs.

One worker process; the fake SuperOffice runs in this process. Two phases per run:

1. from the CRM (``ErpConnectionId`` 0): erpsync reads the N contacts from SuperOffice in archive
   queries of 100 ids and writes the stale ``phone`` of each ERP record (synthetic ERPs);
2. from ERP 1: every record's phone differs from SuperOffice's, so erpsync sends SuperOffice one
   JSON Patch per record: N calls at most R per second, the phase the rate limit decides.

The superoffice connector paces its own requests (``rate_limit`` = 0.96 R) so that it stays under
the server's limit. Printed: records/s and SuperOffice calls per record of both phases, the
calls/s of phase 2, the share of the limit they use (its calls against what the server's bucket
allows in that time: R per second plus its initial burst of R) and the share answered 429.

    python -m benchmarks.superoffice [--smoke] [--repeats 3] [--records 3000] [--rate 50]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.config import ADMIN_DATABASE_URL, AMQP_URL
from benchmarks.reporting import Report, arguments, fmt
from benchmarks.scenario import Bench, run_main, seed_links
from benchmarks.synthetic import REFERENCE as SYNTHETIC
from connectors.testing.superoffice_fake import Credentials, SuperOfficeFake
from engine.settings import Settings
from tests.support import services

PASSWORD = "bench-superoffice-password"  # noqa: S105 - the fake's own user
PHONE = "contactPhone/formattedNumber"


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=None, help="default 3,000")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="per SuperOffice call")
    parser.add_argument("--rate", type=float, default=50.0, help="SuperOffice calls/s allowed")
    parser.add_argument("--erp-latency-ms", type=float, default=20.0)


def settings(bench: Bench, fake: SuperOfficeFake, args: argparse.Namespace) -> Settings:
    """SuperOffice as connection 0, two synthetic ERPs with a stale phone each."""
    base = bench.settings().model_dump(mode="json")
    crm = {
        "id": 0,
        "name": "SuperOffice (fake)",
        "connector": "superoffice",
        "concurrency": 8,
        "batch_size": 100,
        "timeout": 30,
        "retry": {"attempts": 5, "base_delay": 0.2, "max_delay": 5},
        "settings": {
            "base_url": fake.url,
            "auth": {"type": "basic", "username": "bench", "password": PASSWORD},
            "actor_types": {"Contact": ["name", PHONE, "email/emailAddress"]},
            "rate_limit": args.rate * 0.96,
            "write_concurrency": 8,
        },
    }

    def erp(cid: int, phone: str) -> dict[str, Any]:
        return {
            "id": cid,
            "name": f"ERP {cid}",
            "connector": SYNTHETIC,
            "concurrency": 8,
            "batch_size": 100,
            "settings": {
                "actor_types": {"Customer": ["name", "phone", "email"]},
                "stale_fields": ["phone"],
                "latency_ms": args.erp_latency_ms,
            },
            "actor_types": [
                {
                    "erp": "Customer",
                    "crm": "Contact",
                    "fields": {
                        "name": {"crm": "name", "direction": "to_erp"},
                        "phone": {"crm": PHONE, "direction": phone},
                        "email": {"crm": "email/emailAddress", "direction": "to_erp"},
                    },
                }
            ],
        }

    base["database"]["url"] = services.database_url(bench.database, ADMIN_DATABASE_URL)
    base["broker"]["url"] = AMQP_URL
    base["auth"] = {"users": []}
    base["crm"] = crm
    base["connections"] = [erp(1, "both"), erp(2, "to_erp")]
    return Settings.model_validate(base)


def seed_fake(fake: SuperOfficeFake, records: int) -> None:
    """Contacts 1..N with the values the synthetic ERPs compute (so only phones differ)."""
    for k in range(1, records + 1):
        fake.put(
            "Contact",
            {"name": f"name {k}", PHONE: f"phone {k}", "email/emailAddress": f"email {k}"},
            k,
        )


async def main() -> None:
    args = arguments(__doc__ or "", options)
    records = args.records or (200 if args.smoke else 3_000)
    rate = args.rate
    report = Report(
        "superoffice",
        args,
        {
            "records": records,
            "superoffice_latency_ms": args.latency_ms,
            "superoffice_rate_limit": rate,
            "client_rate_limit": rate * 0.96,
            "erp_latency_ms": args.erp_latency_ms,
            "batch_size": 100,
            "worker_processes": 1,
        },
    )
    crm_rate = report.figure("from_crm_records_per_s", "records/s (phase 1, CRM -> 2 ERPs)")
    crm_calls = report.figure(
        "from_crm_calls_per_record",
        "SuperOffice calls per record (phase 1)",
        higher_is_better=False,
    )
    erp_rate = report.figure("from_erp_records_per_s", "records/s (phase 2, ERP 1 -> CRM, ERP 2)")
    erp_calls = report.figure(
        "from_erp_calls_per_record",
        "SuperOffice calls per record (phase 2)",
        higher_is_better=False,
    )
    used = report.figure("calls_per_s_used", f"SuperOffice calls/s in phase 2 (limit {rate:g})")
    throttled = report.figure(
        "throttled_percent", "% of calls answered 429", higher_is_better=False
    )
    share = report.figure("limit_used_percent", "% of the calls the limit allows (phase 2)")
    credentials = Credentials(users={"bench": PASSWORD})
    fake = SuperOfficeFake(credentials, latency=args.latency_ms / 1000, rate_limit=rate)
    await fake.start()
    try:
        async with Bench("superoffice") as bench:
            await seed_links(bench.conn, records)
            await bench.start("worker", settings(bench, fake, args), "worker")
            async with bench.publisher(bench.settings()) as publisher:
                for _ in range(args.repeats):
                    seed_fake(fake, records)
                    fake.requests.clear()
                    fake.throttled = 0
                    for source, rate_fig, calls_fig in (
                        (0, crm_rate, crm_calls),
                        (1, erp_rate, erp_calls),
                    ):
                        mark = len(fake.requests)
                        t0 = time.perf_counter()
                        row = await bench.wait_task(
                            message_id=await bench.resync_all(publisher, source)
                        )
                        elapsed = time.perf_counter() - t0
                        assert row["state"] == "Succeeded", dict(row)
                        calls = [r for r in fake.requests[mark:] if r.path.startswith("/api/")]
                        rate_fig.add(records / elapsed)
                        calls_fig.add(len(calls) / records)
                    patches = [r for r in calls if r.method == "PATCH"]
                    assert len(patches) == records, f"{len(patches)} patches for {records} records"
                    window = calls[-1].at - calls[0].at
                    used.add((len(calls) - 1) / window if window > 0 else float("nan"))
                    # What the limit allows in that window: R per second plus its burst of R.
                    share.add(100 * len(calls) / (rate * window + rate))
                    total = len([r for r in fake.requests if r.path.startswith("/api/")])
                    throttled.add(100 * fake.throttled / max(total, 1))
    finally:
        await fake.close()
    report.check(
        "SuperOffice calls used in phase 2, of those the limit allows (R/s + a burst of R)",
        ">= 90%",
        f"{fmt(share.median)}% ({fmt(used.median)} calls/s)",
        share.median >= 90,
    )
    report.check(
        "calls answered 429",
        "<= 1%",
        f"{fmt(throttled.median)}%",
        throttled.median <= 1.0,
    )
    report.finish()


if __name__ == "__main__":
    run_main(main)
