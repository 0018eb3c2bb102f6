"""``rest``: JSON over HTTP to an ERP's REST API.

One aiohttp ``ClientSession`` per connection (opened in ``open()``, closed in ``aclose()``).
Per actor type the config gives path templates for reading many actors by key, saving a batch
and creating one actor, and the JSON names of the key, last-modified and field properties:

* get-many: ``GET {base_url}{get_many}`` where ``{keys}`` is the comma-separated, URL-encoded
  keys (at most ``max_keys_per_request`` per request); the answer is a JSON array of records,
  or an object holding it under ``items_field``.
* save: ``{save_method} {base_url}{save}`` with ``{items_field: [records]}`` (or a bare array);
  the answer lists the saved records under ``items_field`` and per-record failures under
  ``errors_field`` as ``{key_field: ..., "message": ...}``.
* create: ``POST {base_url}{create}`` with one record and the idempotency key in a header;
  the answer is the created record.
* changed since (optional): ``GET {base_url}{changed_since}`` with ``{since}`` and ``{limit}``.

Values travel as JSON typed by each field's ``type`` (Integer -> number, Checkbox -> boolean,
...) and come back to the engine as text. Errors follow the taxonomy: connection failures,
timeouts, 408, 429 and 5xx are transient (``Retry-After`` honoured, capped), 401/403 are
configuration errors, other statuses permanent. Responses are read up to
``max_response_bytes`` and never trusted: malformed bodies are permanent errors, records with
keys that were not asked for are ignored.
"""

from connectors.rest.config import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    RestActorType,
    RestConfig,
    RestField,
)
from connectors.rest.connector import RestConnector

__all__ = [
    "ApiKeyAuth",
    "BasicAuth",
    "BearerAuth",
    "RestActorType",
    "RestConfig",
    "RestConnector",
    "RestField",
]
