"""PuLP with its bundled CBC, as the ARAS passes use it: deterministic, single-threaded, exact optimum."""
from __future__ import annotations

import warnings

import pulp


def solver():
    """CBC, seeded, proving optimality. No `-threads` option: CBC's default runs the search in the calling
    thread, while `-threads 1` starts a worker that CBC sometimes waits 10 s to see started."""
    with warnings.catch_warnings():    # PuLP 3 deprecates the bundled CBC; it is what ships
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(msg=False, gapRel=0, options=["randomSeed 1"])


def var(prob, name: str, cat: str = "Binary", low=None):
    if hasattr(prob, "add_variable"):        # PuLP 3 attaches variables to their problem
        return prob.add_variable(name, lowBound=low, cat=cat)
    return pulp.LpVariable(name, lowBound=low, cat=cat)
