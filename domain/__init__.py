"""keyledger's domain: key aggregates and events, key specs, key-state rules and pure crypto helpers.

Imports only the standard library, ``eventsourcing.domain`` and ``cryptography``.
"""
