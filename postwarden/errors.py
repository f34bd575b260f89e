"""The exception root shared by every postwarden component.

Description:
    Each subsystem defines narrow subclasses next to the code that raises them; the class
    docstring doubles as the default message (as in dnspython). The CLI maps any
    ``PostwardenError`` to a one-line message and a non-zero exit; the daemons turn one raised
    while answering a request into a temporary failure for that request only.
"""


class PostwardenError(Exception):
    """Unspecified postwarden error."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or (self.__doc__ or "",)))
