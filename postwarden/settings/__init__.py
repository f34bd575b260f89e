"""The shared settings store: one YAML file (declarative) plus a small state database.

The daemons see the store only through :mod:`postwarden.settings.snapshot` (load a compiled
snapshot, notice a change) and :mod:`postwarden.settings.state` (append run-time state), so a
later backend can replace the file without touching them.
"""
