"""The runtime's one user-facing error: an input or instruction the machine cannot execute."""


class RuntimeFault(Exception):
    pass
