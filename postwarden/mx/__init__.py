"""Where a domain's mail goes: its MX records and their addresses, asked of DNS.

Description:
    :mod:`~postwarden.mx.lookup` resolves a domain's MX hosts (RFC 5321 5.1: preference
    order, the domain itself when there is no MX, none at all for a null MX) and their
    addresses; :mod:`~postwarden.mx.gateway` compares a hosted domain's MX with its inbound
    gateway entries (``postwarden gateway check``, ``status``, ``check --dns``). ``postwarden
    tls test`` (:mod:`postwarden.tls.probe`) connects to a partner's MX hosts found here.

    Layering: beside ``postwarden.dkim``; uses the settings model, never the CLI or daemons.
"""
