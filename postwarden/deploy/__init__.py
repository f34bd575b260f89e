"""Installing postwarden on a server: the service account, directories and systemd units.

``postwarden setup`` (:mod:`postwarden.cli.setup`) runs the :mod:`~postwarden.deploy.layout`
plan with the units of :mod:`~postwarden.deploy.units`.
"""
