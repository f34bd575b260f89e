"""Outgoing TLS as Postfix's smtp client sees it: ``postwarden tls test PARTNER``.

Description:
    :mod:`~postwarden.tls.names` matches certificate names the way Postfix does for its
    ``verify`` (``match=hostname``) and ``secure`` (``match=nexthop:dot-nexthop``) levels;
    :mod:`~postwarden.tls.probe` connects to a partner's MX hosts, does STARTTLS with the
    same OpenSSL library, checks the chain and names, and says for each policy level whether
    Postfix would deliver — before an administrator enforces a policy.
"""
