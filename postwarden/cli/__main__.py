"""``python -m postwarden.cli``: the same as the ``postwarden`` command."""

import sys

from postwarden.cli import main

sys.exit(main())
