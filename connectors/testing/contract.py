"""The conformance kit: standard checks every connector must pass.

Subclass :class:`ConnectorContract` in a test module (its name must start with ``Test``) and
give it a ``harness`` fixture returning a :class:`Harness`: a factory for the connector under
test plus direct access to the system behind it. Every check opens its own connector(s), so
the checks run in any order and each leaves the connector closed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

import pytest
import structlog

from connectors.contract import (
    ActorTypesInput,
    Capability,
    ChangedSinceInput,
    Connector,
    ConnectorContext,
    ConnectorError,
    CreateActorInput,
    FieldsInput,
    GetActorsInput,
    ListItemsInput,
    PermanentError,
    SaveActorsInput,
    SearchActorsInput,
    TestConnectionInput,
    capabilities,
)
from connectors.model import (
    Actor,
    CrmActorType,
    ErpActorType,
    FieldAccess,
    FieldMetadata,
    FieldType,
    FieldValue,
)

_KNOWN_ACTOR_TYPES = {str(t) for t in ErpActorType} | {str(t) for t in CrmActorType}
_UNSUPPORTED = frozenset({FieldType.Label, FieldType.Password})
_CANCEL_POINTS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
_counter = itertools.count(1)


async def expect_connector_error(call: Callable[[], Awaitable[object]], what: str) -> None:
    """Assert that ``call()`` raises a :class:`ConnectorError` (and nothing else)."""
    try:
        await call()
    except ConnectorError:
        return
    except Exception as exc:
        raise AssertionError(
            f"{what} raised {type(exc).__name__}: {exc}; expected a ConnectorError "
            "(TransientError, PermanentError or ConfigurationError)"
        ) from exc
    raise AssertionError(f"{what} did not raise; expected a ConnectorError")


def make_context(connection_id: int = 1, **kwargs: Any) -> ConnectorContext:
    """A :class:`ConnectorContext` like the engine's, with a structlog logger bound to it."""
    kwargs.setdefault("connection_name", f"contract {connection_id}")
    kwargs.setdefault(
        "logger", structlog.get_logger("erpsync.contract").bind(connection=connection_id)
    )
    return ConnectorContext(connection_id=connection_id, **kwargs)


class Harness(abc.ABC):
    """What the kit needs to know about a connector and the system behind it.

    Implement :meth:`connector`, :meth:`seed` and :meth:`read`; override the rest when the
    defaults do not fit your system.
    """

    secrets: Sequence[str] = ()
    """Secret values from the connector's config (passwords, tokens) that must never appear in
    reprs, error messages or logs."""

    idempotent_create: bool = True
    """Whether ``create_actor`` honours ``idempotency_key`` (two creates, one actor)."""

    concurrency: int = 8
    """How many calls the concurrency check runs at once."""

    settle_timeout: float = 5.0
    """Seconds a cancelled save may take to finish in the background (a worker thread, the
    remote system) before a partly written batch counts as half-written."""

    @abc.abstractmethod
    def connector(self) -> Connector:
        """A new, unopened connector for the system under test (use :func:`make_context`)."""

    @abc.abstractmethod
    async def seed(self, actor_type: str, values: Mapping[str, FieldValue]) -> str:
        """Create an actor directly in the system (not through the connector); return its key."""

    @abc.abstractmethod
    async def read(self, actor_type: str, key: str) -> Mapping[str, FieldValue] | None:
        """Read an actor's fields directly from the system, as text; None when absent."""

    def broken_connector(self) -> Connector | None:
        """A connector whose system is unreachable or refuses its credentials, if you can make
        one; its failures must be :class:`ConnectorError`\\ s."""
        return None

    def unknown_key(self, actor_type: str) -> str:
        """A well-formed key that no actor of ``actor_type`` has."""
        return f"missing-{uuid.uuid4().hex[:12]}"

    def writable(self, field: FieldMetadata) -> bool:
        """Whether the checks may write ``field``."""
        return field.access is not FieldAccess.ReadOnly and field.type not in _UNSUPPORTED

    def sample_value(self, actor_type: str, field: FieldMetadata, n: int) -> FieldValue:
        """A valid value for ``field``, distinct for each ``n``, in the form reads return."""
        if field.type is FieldType.Integer:
            return str(100 + n)
        if field.type is FieldType.Double:
            return f"{n}.5"
        if field.type is FieldType.Checkbox:
            return "1" if n % 2 else "0"
        if field.type is FieldType.Date:
            return f"2024-{n % 12 + 1:02d}-{n % 28 + 1:02d}"
        text = f"c{n}-{field.key}"
        return text[: field.max_length] if field.max_length else text


class ConnectorContract:
    """The standard checks. Subclass as ``class TestMyConnector(ConnectorContract)`` and
    define a ``harness`` fixture; the plugin (``erpsync_connectors``) does the rest."""

    __test__: ClassVar[bool] = False  # collected only through subclasses named Test*

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    @contextlib.asynccontextmanager
    async def opened(harness: Harness) -> AsyncIterator[Connector]:
        """A freshly opened connector, closed afterwards."""
        connector = harness.connector()
        await connector.open()
        try:
            yield connector
        finally:
            await connector.aclose()

    @staticmethod
    async def actor_types(connector: Connector) -> list[str]:
        result = await connector.supported_actor_types(ActorTypesInput())
        return list(result.actor_types)

    @staticmethod
    async def writable_fields(
        harness: Harness, connector: Connector, actor_type: str
    ) -> list[FieldMetadata]:
        result = await connector.fields(FieldsInput(actor_type))
        fields = [f for f in result.fields if harness.writable(f)]
        assert fields, f"{actor_type} has no writable fields the kit can use"
        return fields

    @staticmethod
    def values(
        harness: Harness, actor_type: str, fields: Sequence[FieldMetadata]
    ) -> dict[str, FieldValue]:
        n = next(_counter)
        return {f.key: harness.sample_value(actor_type, f, n) for f in fields}

    async def seeded(
        self, harness: Harness, connector: Connector, actor_type: str
    ) -> tuple[str, dict[str, FieldValue], list[FieldMetadata]]:
        """Seed one actor with sample values; return its key, values and writable fields."""
        fields = await self.writable_fields(harness, connector, actor_type)
        values = self.values(harness, actor_type, fields)
        key = await harness.seed(actor_type, values)
        return key, values, fields

    @staticmethod
    def assert_values(
        got: Mapping[str, FieldValue] | None, expected: Mapping[str, FieldValue], what: str
    ) -> None:
        assert got is not None, f"{what}: actor is missing"
        differing = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
        assert not differing, f"{what}: fields differ (got, expected): {differing}"

    # -- lifecycle ------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_open_test_connection_and_close(self, harness: Harness) -> None:
        never_opened = harness.connector()
        await never_opened.aclose()  # closing what was never opened is harmless
        connector = harness.connector()
        await connector.open()
        try:
            result = await connector.test_connection(TestConnectionInput())
            assert result.ok, f"test_connection failed: {result.message}"
            assert isinstance(result.message, str)
        finally:
            await connector.aclose()

    @pytest.mark.asyncio
    async def test_supported_actor_types_are_known_names(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            types = await self.actor_types(connector)
        assert types, "supported_actor_types returned nothing"
        assert len(set(types)) == len(types), f"duplicate actor types: {types}"
        unknown = [t for t in types if t not in _KNOWN_ACTOR_TYPES]
        assert not unknown, f"not ErpActorType/CrmActorType names: {unknown}"

    # -- metadata -------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_field_metadata_is_consistent(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            for actor_type in await self.actor_types(connector):
                result = await connector.fields(FieldsInput(actor_type))
                keys = [f.key for f in result.fields]
                assert keys, f"{actor_type}: no fields"
                assert all(isinstance(k, str) and k for k in keys), f"{actor_type}: empty key"
                assert len(set(keys)) == len(keys), f"{actor_type}: duplicate field keys {keys}"
                for f in result.fields:
                    assert isinstance(f, FieldMetadata), f"{actor_type}.{f!r} is no FieldMetadata"
                    assert f.type in FieldType, f"{actor_type}.{f.key}: bad type {f.type!r}"
                    assert f.access in FieldAccess, f"{actor_type}.{f.key}: bad access"
                    assert f.max_length >= 0, f"{actor_type}.{f.key}: negative max_length"
                # Reading every field returns exactly the described fields.
                key, _, _ = await self.seeded(harness, connector, actor_type)
                got = await connector.get_actors(GetActorsInput(actor_type, [key]))
                assert [a.key for a in got.actors] == [key]
                assert set(got.actors[0].fields) == set(keys), (
                    f"{actor_type}: a read of all fields returned {sorted(got.actors[0].fields)}, "
                    f"the metadata describes {sorted(keys)}"
                )
            with pytest.raises(PermanentError):
                await connector.fields(FieldsInput("NoSuchActorType"))

    # -- reads ----------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_get_round_trip(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            for actor_type in await self.actor_types(connector):
                key, values, fields = await self.seeded(harness, connector, actor_type)
                got = await connector.get_actors(GetActorsInput(actor_type, [key]))
                assert len(got.actors) == 1, f"{actor_type} {key!r}: got {got.actors}"
                actor = got.actors[0]
                assert (actor.actor_type, actor.key) == (actor_type, key)
                self.assert_values(actor.fields, values, f"get {actor_type} {key!r}")
                assert actor.last_modified, f"{actor_type} {key!r}: no last_modified"
                subset = [fields[0].key]
                got = await connector.get_actors(GetActorsInput(actor_type, [key], subset))
                assert list(got.actors[0].fields) == subset, (
                    f"{actor_type}: asked for {subset}, got {list(got.actors[0].fields)}"
                )

    @pytest.mark.asyncio
    async def test_unknown_keys_are_left_out(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            for actor_type in await self.actor_types(connector):
                key, _, _ = await self.seeded(harness, connector, actor_type)
                missing = harness.unknown_key(actor_type)
                got = await connector.get_actors(GetActorsInput(actor_type, [missing, key]))
                assert [a.key for a in got.actors] == [key]
                got = await connector.get_actors(GetActorsInput(actor_type, []))
                assert list(got.actors) == []

    # -- writes ---------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_save_round_trip(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            for actor_type in await self.actor_types(connector):
                key, before, fields = await self.seeded(harness, connector, actor_type)
                changed = self.values(harness, actor_type, fields[: max(1, len(fields) // 2)])
                result = await connector.save_actors(
                    SaveActorsInput(actor_type, [Actor(actor_type, key, changed)])
                )
                assert not result.failures, f"save {actor_type} {key!r}: {result.failures}"
                assert [a.key for a in result.saved] == [key]
                assert result.saved[0].last_modified, "a saved actor has no last_modified"
                expected = {**before, **changed}
                what = f"{actor_type} {key!r} after save"
                self.assert_values(await harness.read(actor_type, key), expected, what)
                got = await connector.get_actors(GetActorsInput(actor_type, [key]))
                self.assert_values(got.actors[0].fields, expected, what + " (read back)")

    @pytest.mark.asyncio
    async def test_save_reports_unknown_keys_per_actor(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            for actor_type in await self.actor_types(connector):
                key, _, fields = await self.seeded(harness, connector, actor_type)
                missing = harness.unknown_key(actor_type)
                values = self.values(harness, actor_type, fields[:1])
                result = await connector.save_actors(
                    SaveActorsInput(
                        actor_type,
                        [Actor(actor_type, missing, values), Actor(actor_type, key, values)],
                    )
                )
                assert [a.key for a in result.saved] == [key]
                assert [f.key for f in result.failures] == [missing]
                assert await harness.read(actor_type, missing) is None

    @pytest.mark.asyncio
    async def test_saving_the_same_values_twice_changes_nothing(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            for actor_type in await self.actor_types(connector):
                key, before, fields = await self.seeded(harness, connector, actor_type)
                changed = self.values(harness, actor_type, fields)
                request = SaveActorsInput(actor_type, [Actor(actor_type, key, changed)])
                first = await connector.save_actors(request)
                after_first = dict(await harness.read(actor_type, key) or {})
                second = await connector.save_actors(request)
                after_second = dict(await harness.read(actor_type, key) or {})
                assert not first.failures, first.failures
                assert not second.failures, second.failures
                assert after_first == after_second, "the second identical save changed values"
                self.assert_values(after_second, {**before, **changed}, f"{actor_type} {key!r}")

    @pytest.mark.asyncio
    async def test_create_round_trip(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            can_create = Capability.create in capabilities(connector)
            for actor_type in await self.actor_types(connector):
                fields = await self.writable_fields(harness, connector, actor_type)
                values = self.values(harness, actor_type, fields)
                request = CreateActorInput(
                    Actor(actor_type, "", values), idempotency_key=f"contract-{uuid.uuid4()}"
                )
                if not can_create:
                    with pytest.raises(PermanentError):
                        await connector.create_actor(request)
                    continue
                created = (await connector.create_actor(request)).actor
                assert created.key, f"create {actor_type}: no key returned"
                assert created.actor_type == actor_type
                assert created.last_modified, f"create {actor_type}: no last_modified"
                self.assert_values(created.fields, values, f"created {actor_type}")
                what = f"created {actor_type} {created.key!r}"
                self.assert_values(await harness.read(actor_type, created.key), values, what)
                if harness.idempotent_create:
                    again = (await connector.create_actor(request)).actor
                    assert again.key == created.key, (
                        f"create {actor_type} with the same idempotency_key made a second actor"
                    )

    # -- concurrency and cancellation -----------------------------------------------------------

    @pytest.mark.asyncio
    async def test_parallel_calls_are_safe(self, harness: Harness) -> None:
        n = harness.concurrency
        async with self.opened(harness) as connector:
            can_create = Capability.create in capabilities(connector)
            for actor_type in await self.actor_types(connector):
                seeded = [await self.seeded(harness, connector, actor_type) for _ in range(n)]
                fields = seeded[0][2]
                wanted = {key: self.values(harness, actor_type, fields) for key, _, _ in seeded}
                saves = [
                    connector.save_actors(SaveActorsInput(actor_type, [Actor(actor_type, k, v)]))
                    for k, v in wanted.items()
                ]
                reads = [connector.get_actors(GetActorsInput(actor_type, [k])) for k in wanted]
                results = await asyncio.gather(*saves, *reads)
                for result in results[:n]:
                    assert not getattr(result, "failures", ()), result
                for result in results[n:]:
                    assert len(getattr(result, "actors", ())) == 1, result
                for key, values in wanted.items():
                    what = f"{actor_type} {key!r} after parallel saves"
                    self.assert_values(await harness.read(actor_type, key), values, what)
                if can_create:
                    creates = [
                        connector.create_actor(
                            CreateActorInput(
                                Actor(actor_type, "", self.values(harness, actor_type, fields)),
                                idempotency_key=f"contract-{uuid.uuid4()}",
                            )
                        )
                        for _ in range(n)
                    ]
                    keys = {r.actor.key for r in await asyncio.gather(*creates)}
                    assert len(keys) == n, f"{n} parallel creates made {len(keys)} actors"

    @pytest.mark.asyncio
    async def test_cancellation_leaves_no_half_written_batch(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            actor_type = (await self.actor_types(connector))[0]
            fields = await self.writable_fields(harness, connector, actor_type)
            for steps in _CANCEL_POINTS:
                batch = {}
                for _ in range(3):
                    before = self.values(harness, actor_type, fields)
                    batch[await harness.seed(actor_type, before)] = before
                after = {key: self.values(harness, actor_type, fields) for key in batch}
                task = asyncio.ensure_future(
                    connector.save_actors(
                        SaveActorsInput(
                            actor_type, [Actor(actor_type, k, v) for k, v in after.items()]
                        )
                    )
                )
                for _ in range(steps):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await self._assert_all_or_none(harness, actor_type, batch, after, steps)
            # The connector is still usable after all those cancellations.
            key = next(iter(batch))
            got = await connector.get_actors(GetActorsInput(actor_type, [key]))
            assert [a.key for a in got.actors] == [key]

    @staticmethod
    async def _assert_all_or_none(
        harness: Harness,
        actor_type: str,
        before: Mapping[str, Mapping[str, FieldValue]],
        after: Mapping[str, Mapping[str, FieldValue]],
        steps: int,
    ) -> None:
        """The batch is either entirely written or not at all. A cancelled call may still
        finish in the background (a thread, the remote server), so a mixed state is given
        ``harness.settle_timeout`` to become whole; one that stays mixed fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + harness.settle_timeout
        while True:
            written = []
            for key in before:
                current = dict(await harness.read(actor_type, key) or {})
                if all(current.get(k) == v for k, v in after[key].items()):
                    written.append(True)
                elif all(current.get(k) == v for k, v in before[key].items()):
                    written.append(False)
                else:
                    raise AssertionError(f"{actor_type} {key!r} is half written: {current}")
            if len(set(written)) == 1:
                return
            if loop.time() > deadline:
                raise AssertionError(
                    f"cancelled after {steps} loop steps, only some actors of the batch were "
                    f"written, and stayed so for {harness.settle_timeout:g}s: {written}"
                )
            await asyncio.sleep(0.01)

    # -- errors ---------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_errors_are_mapped_to_the_taxonomy(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            nowhere = "NoSuchActorType"
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "get_actors": lambda: connector.get_actors(GetActorsInput(nowhere, ["1"])),
                "save_actors": lambda: connector.save_actors(
                    SaveActorsInput(nowhere, [Actor(nowhere, "1", {"x": "1"})])
                ),
                "fields": lambda: connector.fields(FieldsInput(nowhere)),
            }
            for what, call in calls.items():
                await expect_connector_error(call, f"{what} of an unknown actor type")
            actor_type = (await self.actor_types(connector))[0]
            key, _, _ = await self.seeded(harness, connector, actor_type)
            bad = Actor(actor_type, key, {"no_such_field_xyz": "1"})
            try:
                result = await connector.save_actors(SaveActorsInput(actor_type, [bad]))
            except ConnectorError:
                pass
            else:
                assert [f.key for f in result.failures] == [key], (
                    "saving an unknown field must fail (a failure or a ConnectorError)"
                )
        broken = harness.broken_connector()
        if broken is not None:
            await self.assert_broken(broken)

    @staticmethod
    async def assert_broken(connector: Connector) -> None:
        """Every failure of an unusable connector is a ConnectorError, never anything else."""
        try:
            await connector.open()
        except ConnectorError:
            await connector.aclose()
            return
        except Exception as exc:
            await connector.aclose()
            raise AssertionError(
                f"open() of a broken connection raised {type(exc).__name__}: {exc}; "
                "expected a ConnectorError"
            ) from exc
        try:
            result = await connector.test_connection(TestConnectionInput())
            assert not result.ok, "test_connection of a broken connection said ok"
            types = await connector.supported_actor_types(ActorTypesInput())
            request = GetActorsInput(next(iter(types.actor_types)), ["1"])
            await expect_connector_error(
                lambda: connector.get_actors(request), "get_actors on a broken connection"
            )
        except ConnectorError:
            pass
        finally:
            await connector.aclose()

    # -- secrets --------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_secrets_never_appear_in_reprs_errors_or_logs(
        self,
        harness: Harness,
        caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        caplog.set_level(logging.DEBUG)
        shown: list[str] = []
        connector = harness.connector()
        config = getattr(connector, "config", None)
        shown += [repr(connector), str(connector), repr(config), str(config)]
        dump = getattr(config, "model_dump_json", None)
        if callable(dump):
            shown.append(dump())
        shown.append(repr(getattr(connector, "context", None)))
        await connector.open()
        try:
            shown.append(repr(connector))
            shown.append(repr(await connector.test_connection(TestConnectionInput())))
            actor_type = (await self.actor_types(connector))[0]
            key, _, _ = await self.seeded(harness, connector, actor_type)
            shown.append(repr(await connector.get_actors(GetActorsInput(actor_type, [key]))))
            for call in (
                lambda: connector.get_actors(GetActorsInput("NoSuchActorType", ["1"])),
                lambda: connector.fields(FieldsInput("NoSuchActorType")),
            ):
                try:
                    await call()
                except ConnectorError as exc:
                    shown += [str(exc), repr(exc)]
        finally:
            await connector.aclose()
        broken = harness.broken_connector()
        if broken is not None:
            shown.append(repr(broken))
            try:
                await self.assert_broken(broken)
            except ConnectorError as exc:  # pragma: no cover - assert_broken swallows these
                shown.append(str(exc))
            with contextlib.suppress(ConnectorError):
                await broken.open()
                shown.append(repr(await broken.test_connection(TestConnectionInput())))
            await broken.aclose()
        captured = capfd.readouterr()
        shown += [captured.out, captured.err, caplog.text]
        shown += [repr(r.args) + repr(r.__dict__) for r in caplog.records]
        for secret in harness.secrets:
            assert secret, "empty strings are not secrets"
            leaks = [text for text in shown if secret in text]
            assert not leaks, f"a secret appears in: {leaks[0][:300]!r}"

    # -- optional capabilities ------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_optional_capabilities_behave(self, harness: Harness) -> None:
        async with self.opened(harness) as connector:
            found = capabilities(connector)
            actor_type = (await self.actor_types(connector))[0]
            if Capability.changed_since in found:
                await self._check_changed_since(harness, connector, actor_type)
            if Capability.search in found:
                await self._check_search(harness, connector, actor_type)
            if Capability.list_items in found:
                await self._check_list_items(connector, actor_type)

    async def _check_changed_since(self, harness: Harness, connector: Any, actor_type: str) -> None:
        first, _, _ = await self.seeded(harness, connector, actor_type)
        got = await connector.get_actors(GetActorsInput(actor_type, [first]))
        since = got.actors[0].last_modified
        second, _, _ = await self.seeded(harness, connector, actor_type)
        seen: list[str] = []
        cursor = None
        for _ in range(10_000):
            page = await connector.get_actors_changed_since(
                ChangedSinceInput(actor_type, since, cursor=cursor, limit=1)
            )
            assert len(page.actors) <= 1, f"limit=1 returned {len(page.actors)} actors"
            seen += [a.key for a in page.actors]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert first in seen, f"changed since {since!r} must include {first!r} (on): {seen}"
        assert second in seen, f"changed since {since!r} (paged by 1) missed {second!r}: {seen}"
        assert len(seen) == len(set(seen)), f"pages repeat actors: {seen}"

    async def _check_search(self, harness: Harness, connector: Any, actor_type: str) -> None:
        key, values, fields = await self.seeded(harness, connector, actor_type)
        texts = [f for f in fields if f.type is FieldType.Text and values.get(f.key)]
        if not texts:
            return
        needle = values[texts[0].key] or ""
        result = await connector.search_actors(SearchActorsInput(actor_type, needle))
        assert key in [a.key for a in result.actors], f"searching {needle!r} missed {key!r}"

    async def _check_list_items(self, connector: Any, actor_type: str) -> None:
        fields = (await connector.fields(FieldsInput(actor_type))).fields
        for name in {f.list_name for f in fields if f.list_name}:
            items = (await connector.list_items(ListItemsInput(name))).items
            assert all(isinstance(i.key, str) and isinstance(i.text, str) for i in items)
        with pytest.raises(ConnectorError):
            await connector.list_items(ListItemsInput(f"no-such-list-{uuid.uuid4().hex[:8]}"))
