"""vnstitch: stitch virtual networks across substrate segments, keep them fast.

Theory of operation: the package is split into pure cores (``model``, ``protocol``,
``routing``, ``forecast``, ``allocate``) that take inputs and the current time and return
events or actions, and thin drivers (``dataplane``, ``daemon``, ``sim``, ``cli``) that do
the I/O. Nothing here runs at import time.
"""

__version__ = "0.1.0"
