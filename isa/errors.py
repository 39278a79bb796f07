"""The ISA layer's one user-facing error: bad program text, bad target, broken instruction."""


class AsmError(Exception):
    pass
