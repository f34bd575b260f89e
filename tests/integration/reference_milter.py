"""A milter on pymilter (libmilter) that answers every message with fixed actions.

Usage: python -m tests.integration.reference_milter inet:PORT@127.0.0.1 accept|reject

The reference for postwarden's own milter protocol code (test_milter_protocol.py): the
same conversation sent to both must bring the same bytes back.
"""

from __future__ import annotations

import sys

import Milter

SIGNATURE = "v=1; a=rsa-sha256; d=hosted.test; s=s1;\r\n\tb=QUJD"


class Reference(Milter.Base):  # type: ignore[misc]
    def eom(self) -> int:
        if sys.argv[2] == "reject":
            self.setreply("550", "5.7.1", "refused by rule r1")
            return int(Milter.REJECT)
        self.chgheader("X-Postwarden-Trusted", 1, "")
        self.delrcpt("<bob@hosted.test>")
        self.addrcpt("<bob+route@hosted.test>", "ORCPT=rfc822;bob@hosted.test")
        self.addrcpt("<carol@hosted.test>")
        self.addheader("DKIM-Signature", SIGNATURE, 0)
        self.addheader("X-Postwarden-Spam", "r1")
        return int(Milter.CONTINUE)


if __name__ == "__main__":
    Milter.factory = Reference
    Milter.set_flags(
        Milter.ADDHDRS | Milter.CHGHDRS | Milter.ADDRCPT | Milter.ADDRCPT_PAR | Milter.DELRCPT
    )
    Milter.runmilter("reference", sys.argv[1], 30)
