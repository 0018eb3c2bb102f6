"""Completion notifications and RetryFailed without services: the pure parts."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.api.followups import RetryPlan, active_plan, retry_plan
from engine.settings import ConfigError, WebhookSettings, load_settings
from engine.sync.bookkeeping import push_units, pushes_skipped, restriction
from engine.sync.notifications import (
    event_message_id,
    finished_event,
    retry_delay,
    signature,
    signed_headers,
)
from engine.sync.records import ChunkResult

SECRET = "0123456789abcdef-secret"


def test_retry_plan_keeps_per_target_failures_on_their_target() -> None:
    failed = [(1, 2), (2, 2), (2, 3), (5, 1), (7, 0), (7, 2), (9, None)]
    plan = retry_plan(failed, targets={2, 3})  # the source is ERP 1
    assert plan.internal_key_ids == (1, 2, 5, 7, 9)
    # 5 failed on the source, 7 on the CRM, 9 as unknown: those run whole, on every target
    assert plan.target_keys == {2: (1, 2), 3: (2,)}


def test_retry_plan_of_only_whole_record_failures_has_no_restriction() -> None:
    plan = retry_plan([(4, 0), (3, 0)], targets={1, 2})
    assert plan.internal_key_ids == (3, 4)
    assert plan.target_keys is None


def test_a_retry_leaves_out_the_inactive_targets() -> None:
    # From the CRM: 1 and 2 failed on ERP 2 only, 2 on ERP 3 too, 7 whole (CRM side).
    plan = RetryPlan((1, 2, 7), {2: (1, 2), 3: (2,)})
    assert active_plan(plan, 0, [1, 2, 3], frozenset()) == (plan, ())
    assert active_plan(plan, 0, [1, 2, 3], {2}) == (RetryPlan((2, 7), {3: (2,)}), (2,))
    # 7 still goes to ERP 1; 1 and 2 are left out with their only targets.
    assert active_plan(plan, 0, [1, 2, 3], {2, 3}) == (RetryPlan((7,), None), (2, 3))
    assert active_plan(plan, 0, [1, 2, 3], {1, 2, 3}) == (None, (1, 2, 3))
    # Per-target failures only: an inactive ERP that was not aimed at is not named.
    only_two = RetryPlan((1,), {2: (1,)})
    assert active_plan(only_two, 0, [1, 2], {1}) == (only_two, ())
    assert active_plan(only_two, 0, [1, 2], {2}) == (None, (2,))


def test_a_whole_retry_from_an_erp_still_writes_the_crm_with_every_other_erp_inactive() -> None:
    plan = RetryPlan((5,), None)  # failed reading ERP 1
    assert active_plan(plan, 1, [1, 2], {2}) == (plan, (2,))


def test_a_restriction_sends_each_record_only_where_it_is_named() -> None:
    only = restriction({"1": [1, 2], "2": [2]})
    assert only == {1: frozenset({1, 2}), 2: frozenset({2})}
    result = ChunkResult(attempt=0, target=None, records=4, forward=[1, 2, 3, 4])
    units = push_units(result, [1, 2, 3], grace=5.0, only=only)
    # 3 and 4 are named nowhere: every target; 1 only on ERP 1, 2 on ERPs 1 and 2
    assert [(u.target, list(u.internal_key_ids)) for u in units] == [
        (1, [1, 2, 3, 4]),
        (2, [2, 3, 4]),
        (3, [3, 4]),
    ]
    assert pushes_skipped(result, 3, units) == 12 - 9


def test_a_target_left_without_records_gets_no_unit() -> None:
    result = ChunkResult(attempt=0, target=None, records=2, forward=[5, 6])
    units = push_units(result, [1, 2], grace=5.0, only=restriction({"2": [5, 6]}))
    assert [(u.target, list(u.internal_key_ids)) for u in units] == [(2, [5, 6])]
    assert pushes_skipped(result, 2, units) == 2
    assert restriction(None) is None and restriction({}) is None


def _task(**overrides: Any) -> dict[str, Any]:
    at = datetime(2026, 12, 7, 1, 2, 3, 456000, tzinfo=UTC)
    return {
        "id": 42,
        "name": "ForceResyncBatchTask",
        "correlation_id": "order-service/8f3c",
        "message_id": "cmd-1",
        "source_connection_id": 0,
        "state": "Failed",
        "stopped_at": None,
        "response": "3 records; ...",
        "created_at": at,
        "finished_at": at,
        "start_count": 1,
        "total_records": 3,
        "done_records": 3,
        "unknown_keys": 0,
        "writes_updated": 4,
        "writes_unchanged": 1,
        "writes_created": 0,
        "writes_failed": 1,
        "fields_changed": 6,
        **overrides,
    }


def test_the_event_body_names_the_task_its_counts_and_first_failures() -> None:
    failure = {"internal_key_id": 3, "connection_id": 2, "error": "rejected"}
    body = finished_event(_task(), [failure])
    assert body["MessageId"] == event_message_id(42) == "task-finished-42"
    assert body["TaskId"] == 42 and body["State"] == "Failed" and body["Stopped"] is False
    assert body["CorrelationId"] == "order-service/8f3c"
    assert body["Finished"] == "2026-12-07T01:02:03.456+00:00"
    assert body["Counts"] == {
        "TotalRecords": 3,
        "DoneRecords": 3,
        "UnknownKeys": 0,
        "Updated": 4,
        "Unchanged": 1,
        "Created": 0,
        "Failed": 1,
        "FieldsChanged": 6,
    }
    assert body["FirstFailures"] == [{"InternalKeyId": 3, "ConnectionId": 2, "Error": "rejected"}]
    assert finished_event(_task(stopped_at=datetime.now(UTC)), [])["Stopped"] is True


def test_the_event_body_matches_its_published_schema() -> None:
    import jsonschema

    schema_path = Path(__file__).parents[2] / "docs" / "task-finished-event.schema.json"
    schema = orjson.loads(schema_path.read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    failure = {"internal_key_id": 3, "connection_id": None, "error": None}
    body = orjson.loads(orjson.dumps(finished_event(_task(total_records=None), [failure])))
    jsonschema.Draft202012Validator(schema).validate(body)
    for example in schema["examples"]:
        jsonschema.Draft202012Validator(schema).validate(example)


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"TaskId":42}'
    headers = signed_headers(SECRET.encode(), body, "task-finished-42", now=1765069323.9)
    assert headers["X-Erpsync-Timestamp"] == "1765069323"
    expected = hmac.new(SECRET.encode(), b"1765069323." + body, hashlib.sha256).hexdigest()
    assert headers["X-Erpsync-Signature"] == f"sha256={expected}"
    assert signature(SECRET.encode(), "1765069323", body) == f"sha256={expected}"
    assert headers["X-Erpsync-Message-Id"] == "task-finished-42"


def test_retries_back_off_with_jitter_and_stop_at_the_limit() -> None:
    hook = WebhookSettings.model_validate(
        {
            "name": "ops",
            "url": "https://hooks.example/x",
            "secret": SECRET,
            "max_attempts": 4,
            "backoff_base": 1,
            "backoff_max": 3,
        }
    )
    for attempts, cap in ((1, 1.0), (2, 2.0), (3, 3.0)):
        delays = [retry_delay(attempts, hook) for _ in range(50)]
        assert all(d is not None and 0.05 <= d <= cap for d in delays)
    assert retry_delay(4, hook) is None


def _write(tmp_path: Path, hooks: str) -> Path:
    path = tmp_path / "erpsync.toml"
    path.write_text(
        'crm = {id = 0, name = "CRM", connector = "memory", settings = {store = "c", '
        'actor_types = {Contact = ["name"]}}}\n' + hooks,
        encoding="utf-8",
    )
    return path


def test_a_bad_webhook_names_the_file_and_key_and_never_its_secret(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[notifications.webhooks]]\nname = "ops"\nurl = "ftp://x/y?token=tok3n"\n'
        'secret = "short-s3cr3t"\n',
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    message = str(err.value)
    assert f"{path}: notifications.webhooks[0]" in message
    assert "http:// or https://" in message
    assert "tok3n" not in message and "short-s3cr3t" not in message


def test_webhook_url_and_secret_come_from_the_environment_and_stay_secret(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[notifications.webhooks]]\nname = "ops-team"\n')
    env = {
        "ERPSYNC_WEBHOOK_OPS-TEAM__URL": "https://hooks.example/in?token=tok3n",
        "ERPSYNC_WEBHOOK_OPS-TEAM__SECRET": SECRET,
    }
    settings = load_settings(path, env=env)
    [hook] = settings.notifications.webhooks
    assert hook.secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and "tok3n" not in repr(settings)


def test_webhook_names_are_unique(tmp_path: Path) -> None:
    hook = f'[[notifications.webhooks]]\nname = "a"\nurl = "https://h/x"\nsecret = "{SECRET}"\n'
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(_write(tmp_path, hook + hook), env={})


def test_retention_defaults_to_a_week_of_events_and_a_month_of_deliveries(
    tmp_path: Path,
) -> None:
    notifications = load_settings(_write(tmp_path, ""), env={}).notifications
    assert notifications.events_kept == 7 * 24 * 3600
    assert notifications.deliveries_kept == 30 * 24 * 3600
    path = _write(tmp_path, "[notifications]\nevents_kept = 60\ndeliveries_kept = 3600\n")
    notifications = load_settings(path, env={}).notifications
    assert (notifications.events_kept, notifications.deliveries_kept) == (60, 3600)


@pytest.mark.parametrize("key", ["events_kept", "deliveries_kept"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_retention_must_be_positive(tmp_path: Path, key: str, value: str) -> None:
    path = _write(tmp_path, f"[notifications]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"{path}: notifications\.{key}: .*greater than 0"):
        load_settings(path, env={})
    env = {f"ERPSYNC_NOTIFICATIONS__{key.upper()}": value}
    with pytest.raises(ConfigError, match=rf"notifications\.{key} \(from ERPSYNC_NOTIFICATIONS"):
        load_settings(_write(tmp_path, ""), env=env)


def test_the_documented_verification_snippet_accepts_our_signature_only() -> None:
    """docs/api.md's ``verify`` (run as written) accepts what the sender signs."""
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    snippet = text.split("def verify(", 1)[0].rsplit("```python", 1)[1]
    snippet += "def verify(" + text.split("def verify(", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102 - our own documentation
    verify = namespace["verify"]
    body = orjson.dumps({"TaskId": 42})
    headers = signed_headers(SECRET.encode(), body, "task-finished-42", time.time())
    assert verify(SECRET.encode(), headers, body)
    assert not verify(b"another secret, also long", headers, body)
    assert not verify(SECRET.encode(), headers, body + b" ")
    old = signed_headers(SECRET.encode(), body, "task-finished-42", time.time() - 3600)
    assert not verify(SECRET.encode(), old, body)
