"""An entry point that fails to import when ``HOOKLOOP_TESTPLUGINS_BREAK`` is set.

The test suite sets the variable to show that a broken plugin is a clear error naming the
distribution, its version and the entry point, and that training does not start.
"""
import os

if os.environ.get("HOOKLOOP_TESTPLUGINS_BREAK"):
    import hookloop_testplugins_missing_dependency  # noqa: F401  (deliberately absent)
