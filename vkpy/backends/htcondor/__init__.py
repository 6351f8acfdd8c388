"""The HTCondor backend: each pod one HTCondor job (its submit description and states).

Tested without a pool: generated submit descriptions are parsed by HTCondor's own
parser (the PyPI `htcondor` bindings), status parsing runs on fixtures written in
HTCondor's documented JSON ClassAd format, and the testbed's login node carries a
stand-in for condor_submit/q/history/rm (`vkpy.testing.condor_standin`) that prints
those formats and really runs the jobs. The pool itself is not exercised.
"""
