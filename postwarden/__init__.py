"""postwarden: Send/Receive settings for Postfix.

The import package is ``postwarden`` (not ``milter``/``policyd`` at the top level) because
pymilter installs top-level modules named ``milter`` and ``mime`` that such names would shadow.
"""

__version__ = "0.1.0"
