"""A connection's connector settings with some options given as text, for a trial that is never
saved (TestConnectionByConfig).

The options are the keys of the connection's ``settings`` table in TOML (any casing; ``a__b``
for a nested option where the connector takes the environment's flat keys), and each value is
text, coerced by the connector's config model as an ``ERPSYNC_CONNECTION_<ID>__<KEY>`` override
is. Options not given keep their configured values, except those holding a secret (a
``SecretStr`` anywhere in the option's type, e.g. a password, a DSN, an ``auth`` table): a trial
never carries a configured secret, so options pointing elsewhere (another URL) cannot send the
connection's credentials there. Messages name options, never their values.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from connectors.registry import load as load_connector
from engine.settings.model import ConnectionSettings

MAX_MESSAGE = 1000


class TrialSettingsError(ValueError):
    """The options do not configure the connection's connector; the message names them."""


def trial_settings(conn: ConnectionSettings, options: Mapping[str, str]) -> dict[str, Any]:
    """The connector settings of a trial of ``conn`` with ``options``: its configured settings
    without secrets, the options on top, checked by the connector's config model.

    Raises :class:`TrialSettingsError` for an option the connector does not take, one given
    twice (in two casings), and settings its model refuses (a missing secret among them).
    """
    model: type[BaseModel] = load_connector(conn.connector).config_model
    names = option_names(model)
    spelled = {name: info.alias or name for name, info in model.model_fields.items()}
    secret = secret_options(model)
    given: dict[str, str] = {}
    whole: set[str] = set()
    unknown: list[str] = []
    for key, value in options.items():
        head, sep, rest = key.partition("__")
        name = names.get(head.lower())
        if name is None:
            unknown.append(key)
            continue
        canonical = spelled[name] + sep + rest  # as the model reads it: its alias, if any
        if canonical in given:
            raise TrialSettingsError(f"ConfigFields names the option {canonical!r} twice")
        given[canonical] = value
        if not sep:
            whole.add(name)
    if unknown:
        raise TrialSettingsError(
            f"ConfigFields has options connector {conn.connector!r} does not take: "
            + ", ".join(repr(k[:60]) for k in unknown[:20])
            + "; its options: "
            + ", ".join(sorted(spelled.values()))  # as the configuration spells them
        )
    base = {}
    for key, value in conn.settings.items():
        head = names.get(key.partition("__")[0].lower(), key)
        if head in secret or head in whole:
            continue  # a configured secret stays out; a whole option given replaces its forms
        base[key] = value
    merged = {**base, **given}
    try:
        model.model_validate(merged)
    except ValidationError as exc:
        raise TrialSettingsError(_problems(conn, exc, names, secret)) from None
    return merged


def option_names(model: type[BaseModel]) -> dict[str, str]:
    """Lower-cased option name (field name or alias) -> the field's name."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[name.lower()] = name
        if info.alias:
            names[info.alias.lower()] = name
    return names


def secret_options(model: type[BaseModel]) -> frozenset[str]:
    """The names of the options whose type holds a secret anywhere."""
    return frozenset(
        name for name, info in model.model_fields.items() if _holds_secret(info.annotation, set())
    )


def _holds_secret(annotation: Any, seen: set[int]) -> bool:
    if annotation is None or id(annotation) in seen:
        return False
    seen.add(id(annotation))
    if annotation in (SecretStr, SecretBytes):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(_holds_secret(f.annotation, seen) for f in annotation.model_fields.values())
    args: tuple[Any, ...] = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType):
        args = annotation.__args__
    return any(_holds_secret(arg, seen) for arg in args)


def _problems(
    conn: ConnectionSettings,
    exc: ValidationError,
    names: Mapping[str, str],
    secret: frozenset[str],
) -> str:
    lines = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = ".".join(str(part) for part in err["loc"]) or "(settings)"
        head = names.get(str(err["loc"][0]).partition("__")[0].lower()) if err["loc"] else None
        if err["type"] == "extra_forbidden":
            lines.append(f"{loc}: not an option")
        elif err["type"] == "missing" and head in secret:
            lines.append(f"{loc}: required (a test uses no configured secret: give it)")
        elif head in secret:
            lines.append(f"{loc}: not valid")  # a validator's message might quote the secret
        else:
            lines.append(f"{loc}: {err['msg']}")
    text = "; ".join(lines)
    message = f"ConfigFields do not configure connector {conn.connector!r}: {text}"
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
