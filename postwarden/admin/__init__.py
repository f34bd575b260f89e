"""The administration service layer: one set of operations under the CLI and the web console.

Description:
    Every change an administrator can make goes through here, whoever makes it: the
    ``postwarden`` command or ``postwarden-web``. An operation takes typed inputs, validates
    them with the same texts and limits, selects the domain (refusing one outside the
    acting user's reach), gives a subdomain that inherits its own copy of the parent's block
    (and says so), edits the settings file atomically through the settings store, and records
    the change in the audit trail under the acting user's name. ``--dry-run`` runs the same
    steps and writes nothing, reporting the change and the decisions it would alter.

    :mod:`~postwarden.admin.session` the acting user and where the store is;
    :mod:`~postwarden.admin.edit` the one edit path; :mod:`~postwarden.admin.scope` domain
    selection and reach; one module per kind of setting (``iplists``, ``gateway``,
    ``spam_rules``, ``routing_rules``, ``routes``, ``tls_policies``, ``domains``, ``dkim``),
    ``history`` and ``web_users``.

Errors:
    :class:`~postwarden.admin.errors.BadInput` (refused input, nothing changed),
    :class:`~postwarden.admin.errors.NotFound` (no such domain, or not one this user may see),
    :class:`~postwarden.admin.errors.Forbidden` (a setting this user may only read).
"""
