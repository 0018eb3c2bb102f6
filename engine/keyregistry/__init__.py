"""The customer's existing key registry: import and export of SuperOffice's ``ErpInternalKey``,
``ErpExternalKey`` and ``ErpConnection`` tables (CSV or JSON, column names as in SuperOffice's
database reference), keeping the ids so that ``InternalKeyIds`` mean the same records here."""
