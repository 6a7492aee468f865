"""Errors raised by the activation store (all subclasses of `StoreError`)."""

from __future__ import annotations


class StoreError(Exception):
    """Something is wrong with an activation store or with how it is used."""


class SchemaError(StoreError, ValueError):
    """A requested variable, layer, size or coordinate does not fit the schema."""


class ManifestError(StoreError):
    """The store's manifest is missing, unreadable or inconsistent (the data is left as is)."""


class ConfigMismatchError(StoreError):
    """A capture was started into an existing store with a different configuration.

    The message names the differing keys in one short line; `differences` lists every differing key
    with both values.
    """

    differences: list[str] = []


class StoreLockedError(StoreError):
    """Another writer holds the store's lock."""


class SchemaVersionError(StoreError):
    """The store was written with a schema version this package cannot read."""
