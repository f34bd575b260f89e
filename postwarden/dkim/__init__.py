"""DKIM keys of the hosted domains: files, DNS records, verification state.

Description:
    :mod:`~postwarden.dkim.keys` makes, reads and stores private keys (PKCS#8 PEM, 0600,
    owned by the service user); :mod:`~postwarden.dkim.record` formats and parses the
    ``SELECTOR._domainkey.DOMAIN`` TXT record; :mod:`~postwarden.dkim.dnscheck` looks the
    record up at the domain's authoritative name servers; :mod:`~postwarden.dkim.store` keeps
    each key's status (pending, active, retired) in the state database and tells the milter
    which keys to sign with. The signer itself is :mod:`postwarden.milter.dkim_sign`.

    Layering: this package sits above ``postwarden.settings`` and ``postwarden.state`` (it
    uses the state database) and below the store, the CLI and the daemons; it never imports
    them.
"""
