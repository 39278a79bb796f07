"""pimc: compile ONNX models for ReRAM processing-in-memory targets and run them bit-accurately.

    import pimc
    prog = pimc.compile("model.onnx", target="raella", calib=x_calib)    # compile options as keywords
    prog.save("model.pimasm")
    outputs, stats = pimc.run(pimc.load("model.pimasm"), x, ideal=False, noise=0.0, seed=0)
    stats.converts_per_mac, stats.to_json()
"""
from runtime.version import __version__

from .api import Program, Stats, compile, load, options, run, verify

__all__ = ["Program", "Stats", "compile", "load", "run", "verify", "options", "__version__"]
