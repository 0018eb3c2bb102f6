"""erpsync's service: front door, messaging, sync engine and state store."""
