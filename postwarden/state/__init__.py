"""Run-time state: what the daemons and commands record beside the settings document.

Description:
    :mod:`~postwarden.state.db` the state database (SQLite for one host) and its migrations
    (:mod:`~postwarden.state.migrations`); :mod:`~postwarden.state.writer` the daemons'
    bounded, batching writer (block history, unknown recipients);
    :mod:`~postwarden.state.audit` the audit trail; :mod:`~postwarden.state.daemon_status`
    what each daemon last said about itself; :mod:`~postwarden.state.activity` refused
    attempts, recent decisions and listed entries, and :mod:`~postwarden.state.prune` which
    entries history shows unused. Each DKIM key's status is :mod:`postwarden.dkim.store`.

    Layering: below :mod:`postwarden.store`, which chooses the backend, and above
    :mod:`postwarden.settings`; it never imports the daemons, the command line or the
    service layer.
"""
