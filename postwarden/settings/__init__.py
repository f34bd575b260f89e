"""The settings document: schema and model, load/validate, canonical text, atomic file edit,
the compiled snapshot the daemons answer from, and its reload on change.

Run-time state (block history, DKIM key state, audit, daemon status) is
:mod:`postwarden.state`; which backend keeps both (a file and SQLite, or PostgreSQL) is
:mod:`postwarden.store`.
"""
