"""erpsync connector SDK: the public, typed contract for connector authors.

Everything a connector needs is importable from here; other modules are implementation details.
A connector is a class with a ``name``, a pydantic ``config_model`` and async operations that
each take one input object and return one result object (see :class:`Connector`). Register it
in the ``erpsync.connectors`` entry-point group of your distribution, and test it with the
conformance kit in :mod:`connectors.testing`. The tutorial is ``docs/connectors.md``.

One import is all a connector needs::

    import connectors as sdk

    class MyConnector(sdk.BaseConnector[MyConfig]):
        async def get_actors(self, request: sdk.GetActorsInput) -> sdk.GetActorsResult: ...

The optional operations (changed-since, search, list items) are experimental: the engine does
not call them yet.
"""

from connectors.contract import (
    ActorFailure,
    ActorTypesInput,
    ActorTypesResult,
    BaseConnector,
    Capability,
    ChangedSinceInput,
    ChangedSinceResult,
    ConfigurationError,
    Connector,
    ConnectorContext,
    ConnectorError,
    CreateActorInput,
    CreateActorResult,
    FieldsInput,
    FieldsResult,
    GetActorsInput,
    GetActorsResult,
    ListItemsInput,
    ListItemsResult,
    PermanentError,
    SaveActorsInput,
    SaveActorsResult,
    SearchActorsInput,
    SearchActorsResult,
    SupportsChangedSince,
    SupportsListItems,
    SupportsSearch,
    TestConnectionInput,
    TestConnectionResult,
    TransientError,
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
    ListItem,
)
from connectors.registry import (
    ENTRY_POINT_GROUP,
    ConnectorInfo,
    ConnectorLoadError,
    available,
    discover,
    load,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Actor",
    "ActorFailure",
    "ActorTypesInput",
    "ActorTypesResult",
    "BaseConnector",
    "Capability",
    "ChangedSinceInput",
    "ChangedSinceResult",
    "ConfigurationError",
    "Connector",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorInfo",
    "ConnectorLoadError",
    "CreateActorInput",
    "CreateActorResult",
    "CrmActorType",
    "ErpActorType",
    "FieldAccess",
    "FieldMetadata",
    "FieldType",
    "FieldValue",
    "FieldsInput",
    "FieldsResult",
    "GetActorsInput",
    "GetActorsResult",
    "ListItem",
    "ListItemsInput",
    "ListItemsResult",
    "PermanentError",
    "SaveActorsInput",
    "SaveActorsResult",
    "SearchActorsInput",
    "SearchActorsResult",
    "SupportsChangedSince",
    "SupportsListItems",
    "SupportsSearch",
    "TestConnectionInput",
    "TestConnectionResult",
    "TransientError",
    "available",
    "capabilities",
    "discover",
    "load",
]
