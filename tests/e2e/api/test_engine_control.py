"""Continuous sync control over HTTP: GetEngineStatus, ChangeEngineStatus, ChangeEngineInterval,
SyncAll, ForceSyncAll (SuperOffice's shapes), JSON and XML, and a CRM edit that flows out."""

from __future__ import annotations

from typing import Any

import asyncpg

from connectors.memory import MemoryStore
from engine.settings import Settings, SyncSettings
from tests.support.service import AUTH, Service, link
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

ERPSYNC = "/api/v1/Agents/ErpSync"


def sync_settings(database: str, prefix: str, stores: dict[int, MemoryStore]) -> Settings:
    settings = memory_settings(database, prefix, {cid: s.name for cid, s in stores.items()})
    sync = SyncSettings(enabled=True, initial_status="stopped", interval=0.5, tick=0.1)
    return settings.model_copy(update={"sync": sync})


async def post(service: Service, name: str, body: Any = None, **headers: str) -> Any:
    return await service.client.post(f"{ERPSYNC}/{name}", json=body, headers={**AUTH, **headers})


async def seed_acme(db: asyncpg.Connection, stores: dict[int, MemoryStore]) -> None:
    """One CRM contact linked to a customer in each ERP, all three agreeing."""
    stores[0].put("Contact", "1", {"name": "Acme", "phone": "111", "email": "a@crm"})
    stores[1].put("Customer", "E1-1", {"name": "Acme", "phone": "111", "email": "a@crm"})
    stores[2].put("Customer", "E2-1", {"company": "Acme", "tel": "111", "mail": "a@crm"})
    await link(db, 1, "Contact", "1", {1: ("Customer", "E1-1"), 2: ("Customer", "E2-1")})


async def test_engine_status_start_interval_and_a_crm_edit_flowing_out(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed_acme(db, stores)
    async with Service(sync_settings(database, broker_prefix, stores)) as service:
        status = await (await post(service, "GetEngineStatus")).json()
        assert status["IsRunning"] is False and status["StatusMessage"] == "Stopped"
        assert status["Interval"] == "00:00:00.500"
        assert [c["ConnectionId"] for c in status["Connections"]] == [0, 1, 2]

        stopped = await (await post(service, "SyncAll")).json()
        assert stopped["IsOk"] is False and stopped["Status"] == "Error"

        bad = await post(service, "ChangeEngineInterval", {"Interval": "soon"})
        assert bad.status == 400
        error = await bad.json()
        assert error["Error"] is True and "Interval" in error["ErrorMessage"]
        assert (await post(service, "ChangeEngineStatus", {})).status == 400
        response = await post(service, "ChangeEngineInterval", {"Interval": "00:00:01"})
        assert response.status == 204

        started = await (await post(service, "ChangeEngineStatus", {"Run": True})).json()
        assert started["IsRunning"] is True and started["Interval"] == "00:00:01"
        # The first runs find each connection's end; then a CRM edit flows to both ERPs.
        await wait_for(
            lambda: db.fetchval("SELECT count(*) FROM sync_connections WHERE last_outcome = 'ok'"),
            lambda n: n == 3,
            timeout=30,
        )
        stores[0].put("Contact", "1", {"name": "Acme", "phone": "222", "email": "a@crm"})
        # The two ERPs' push units run independently: wait for each.
        await wait_for(
            lambda: _value(stores[2], "Customer", "E2-1", "tel"), lambda v: v == "222", timeout=30
        )
        await wait_for(
            lambda: _value(stores[1], "Customer", "E1-1", "phone"), lambda v: v == "222", timeout=30
        )

        xml = await post(service, "GetEngineStatus", Accept="application/xml")
        text = await xml.text()
        assert xml.status == 200 and "<IsRunning>true</IsRunning>" in text, text
        ok = await (await post(service, "ForceSyncAll")).json()
        assert ok["IsOk"] is True and ok["Status"] == "Ok"
        view = await service.client.get("/api/v1/erpsync/engine", headers=AUTH)
        connections = (await view.json())["Connections"]
        assert all(c["LastOutcome"] == "ok" for c in connections), connections
        assert all(c["NextRun"] for c in connections)

        metrics = await (await service.client.get("/metrics")).text()
        assert 'erpsync_sync_runs_total{connection="0",outcome="ok"}' in metrics
        assert 'erpsync_sync_records_total{connection="0",kind="queued"}' in metrics
        assert 'erpsync_sync_lag_seconds{connection="2"}' in metrics
        assert "erpsync_sync_run_records_bucket" in metrics

        stopped = await (await post(service, "ChangeEngineStatus", {"Run": False})).json()
        assert stopped["IsRunning"] is False


async def _value(store: MemoryStore, actor_type: str, key: str, field: str) -> Any:
    return (store.get(actor_type, key) or {}).get(field)


async def _runs_done(db: asyncpg.Connection, after: dict[int, int]) -> dict[int, asyncpg.Record]:
    """The connections' rows once each has finished a run more than ``after`` counts."""
    rows = {r["connection_id"]: r for r in await db.fetch("SELECT * FROM sync_connections")}
    done = all(
        r["runs"] > after.get(c, 0) and r["run_by"] is None and r["last_outcome"]
        for c, r in rows.items()
    )
    return rows if done and len(rows) == 3 else {}


async def test_force_sync_all_runs_once_while_automatic_sync_is_off(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed_acme(db, stores)
    async with Service(sync_settings(database, broker_prefix, stores)) as service:
        refused = await (await post(service, "SyncAll")).json()
        assert refused["IsOk"] is False and refused["ErrorCode"] == "EngineStopped"

        forced = await (await post(service, "ForceSyncAll")).json()
        assert forced["IsOk"] is True and forced["Status"] == "Ok", forced
        assert "once: automatic sync stays off" in forced["UserExplanation"]
        first = await wait_for(lambda: _runs_done(db, {}), what="one forced run each")
        assert all(r["last_outcome"] == "ok" for r in first.values())

        # A CRM edit: only another ForceSyncAll takes it out while the engine is stopped.
        stores[0].put("Contact", "1", {"name": "Acme", "phone": "222", "email": "a@crm"})
        runs = {c: r["runs"] for c, r in first.items()}
        assert (await (await post(service, "ForceSyncAll")).json())["IsOk"] is True
        second = await wait_for(lambda: _runs_done(db, runs), what="a second forced run each")
        assert second[0]["last_queued"] == 1
        await wait_for(
            lambda: _value(stores[2], "Customer", "E2-1", "tel"), lambda v: v == "222", timeout=30
        )
        status = await (await post(service, "GetEngineStatus")).json()
        assert status["IsRunning"] is False  # one pass each, automatic sync still off
        assert not await db.fetchval("SELECT bool_or(forced_run) FROM sync_connections")

        # erpsync's sync from the start reads every record again (nothing differs: no writes).
        runs = {c: r["runs"] for c, r in second.items()}
        response = await service.client.post("/api/v1/erpsync/engine/sync-from-start", headers=AUTH)
        assert response.status == 200 and (await response.json())["IsOk"] is True
        third = await wait_for(lambda: _runs_done(db, runs), what="a run from the start each")
        assert third[0]["last_changed"] >= 1 and third[1]["last_changed"] >= 1
        assert not await db.fetchval("SELECT bool_or(full_sync_requested) FROM sync_connections")


async def test_change_engine_interval_reads_timespan_parse_forms_and_xs_duration(
    front_door: Service,
) -> None:
    """SuperOffice's Interval is a TimeSpan: TimeSpan.Parse reads ``hh:mm``, and SOAP and
    DataContract XML spell it as an xs:duration."""
    answers: dict[str, str] = {}
    for body, content_type in (
        ('{"Interval": "00:05"}', "application/json"),
        ("<ChangeEngineInterval><Interval>PT45S</Interval></ChangeEngineInterval>", "text/xml"),
        ("Interval=PT1H30M", "application/x-www-form-urlencoded"),
    ):
        response = await front_door.client.post(
            f"{ERPSYNC}/ChangeEngineInterval",
            data=body,
            headers={**AUTH, "Content-Type": content_type},
        )
        assert response.status == 204, await response.text()
        status = await (await post(front_door, "GetEngineStatus")).json()
        answers[body] = status["Interval"]
    assert list(answers.values()) == ["00:05:00", "00:00:45", "01:30:00"]
    for bad in ("PT", "P", "PT0S", "P2D"):
        assert (await post(front_door, "ChangeEngineInterval", {"Interval": bad})).status == 400


async def test_is_running_is_false_while_no_worker_is_alive(front_door: Service) -> None:
    """SuperOffice's IsRunning is "is the engine currently running": a stored status of
    running does not make it so when no worker is alive (the front door runs no engine)."""
    started = await post(front_door, "ChangeEngineStatus", {"Run": True})
    assert started.status == 200
    for status in (await started.json(), await (await post(front_door, "GetEngineStatus")).json()):
        assert status["IsRunning"] is False, status
        assert "No worker is alive" in status["StatusMessage"]
        assert status["Workers"] == {"Alive": 0, "RunningSync": 0}
    for name in ("SyncAll", "ForceSyncAll"):
        refused = await (await post(front_door, name)).json()
        assert refused["IsOk"] is False and refused["ErrorCode"] == "NoLiveWorker", refused


def with_sync(settings: Settings, enabled: bool) -> Settings:
    return settings.model_copy(
        update={"sync": settings.sync.model_copy(update={"enabled": enabled})}
    )


async def test_the_api_answers_for_the_live_workers_not_its_own_sync_setting(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """``erpsync api`` and ``erpsync worker`` with different ``[sync] enabled``: IsRunning,
    SyncAll and ForceSyncAll follow the live workers' leases, not the API process's own
    configuration."""
    await seed_acme(db, stores)
    enabled = sync_settings(database, broker_prefix, stores)
    disabled = with_sync(enabled, False)

    # The API process has the continuous sync disabled; its worker runs it.
    async with Service(disabled, engine=False) as api:
        async with Service(enabled, api=False):
            started = await (await post(api, "ChangeEngineStatus", {"Run": True})).json()
            assert started["IsRunning"] is True, started
            assert started["StatusMessage"].startswith("Running every")
            assert started["Workers"] == {"Alive": 1, "RunningSync": 1}
            await wait_for(lambda: _runs_done(db, {}), what="the worker's first runs")
            synced = await (await post(api, "SyncAll")).json()
            assert synced["IsOk"] is True, synced
            forced = await (await post(api, "ForceSyncAll")).json()
            assert forced["IsOk"] is True, forced
        # The worker stopped (its lease ended): nothing runs the sync any more.
        status = await (await post(api, "GetEngineStatus")).json()
        assert status["IsRunning"] is False and status["Workers"]["Alive"] == 0, status

    # The reverse: the API process has it enabled, its only worker does not run it.
    async with Service(enabled, engine=False) as api, Service(disabled, api=False):
        status = await (await post(api, "GetEngineStatus")).json()
        assert status["IsRunning"] is False, status  # the stored status is still running
        assert "not enabled in the workers' configuration" in status["StatusMessage"]
        assert status["Workers"] == {"Alive": 1, "RunningSync": 0}
        assert all(c["NextRun"] is None for c in status["Connections"])
        for name in ("SyncAll", "ForceSyncAll"):
            refused = await (await post(api, name)).json()
            assert refused["IsOk"] is False and refused["ErrorCode"] == "SyncNotEnabled", refused
