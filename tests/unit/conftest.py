"""Unit-test configuration: hypothesis without per-example deadlines.

A deadline measures how long one example took, not the property under test;
on a machine busy with lab guests the fuzz tests missed hypothesis's 200 ms
default and failed for no fault of the code.
"""

from hypothesis import settings

settings.register_profile("encroot", deadline=None)
settings.load_profile("encroot")
