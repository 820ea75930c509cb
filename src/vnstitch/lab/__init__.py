"""The namespace lab: a real multi-segment substrate on one Linux host (needs root).

Theory of operation: :mod:`vnstitch.lab.netns` makes/removes namespaces and runs
programs inside them; :mod:`vnstitch.lab.substrate` builds segment routers A, T, U, B
and hosts from a run id and tears them down leaving nothing; :mod:`vnstitch.lab.baseline`
stitches a VN by hand through the Linux dataplane driver and measures it (ping, iperf3,
a capture on the transit link).
"""
