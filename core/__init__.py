"""What both Django apps share: the config version, roles, group names, and
admin, API and serializer helpers. Imports neither app (docs/ARCHITECTURE.md)."""
