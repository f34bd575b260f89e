"""``postwarden-web``: the administrator's pages, on the same store and service layer as the CLI.

Description:
    Server-rendered HTML (Starlette + Jinja2, run by uvicorn) that works without JavaScript;
    a small script only adds copy buttons. Every change goes through
    :mod:`postwarden.admin`, so the console validates, limits, refuses and records exactly as
    the ``postwarden`` command does, with the web user's name in the audit trail.

    :mod:`~postwarden.web.main` options and the server; :mod:`~postwarden.web.app` the
    application and its routes; :mod:`~postwarden.web.security` sessions, CSRF, headers and
    the login throttle; :mod:`~postwarden.web.render` templates and messages; one module per
    group of pages under :mod:`postwarden.web.pages`.

Security:
    Loopback by default; TLS in front (``--tls-cert/--tls-key`` or a reverse proxy). Session
    cookies are HttpOnly, SameSite=Strict, Secure over TLS, rotated at login; every form
    carries a CSRF token; the Content-Security-Policy allows no inline script; private keys
    are never shown.
"""
