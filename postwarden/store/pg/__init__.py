"""The PostgreSQL store: one database shared by a fleet of MX hosts.

Description:
    :mod:`~postwarden.store.pg.store` the :class:`~postwarden.store.base.Store` (commands,
    the web console) and the daemons' link; :mod:`~postwarden.store.pg.connect` connections
    and errors in words; :mod:`~postwarden.store.pg.adapter` the shared state queries on a
    server connection; :mod:`~postwarden.store.pg.schema` and its migrations;
    :mod:`~postwarden.store.pg.document` the versioned settings document (optimistic edits);
    :mod:`~postwarden.store.pg.sync` a daemon's local copy of the document and keys, kept
    current by ``LISTEN``/``NOTIFY`` with a slow poll; :mod:`~postwarden.store.pg.spool` the
    local buffer of run-time state and its shipper; :mod:`~postwarden.store.pg.secrets` DKIM
    private keys (optionally encrypted with a key file).

    Nothing a daemon does per request calls the database: daemons answer from local copies
    that background threads keep current, and what they learn is buffered locally first.
"""
