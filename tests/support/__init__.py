"""Helpers of the test suite: shared call helpers, fault injectors (proxies, a silent peer), the
Temporal dev server and apps, and the scripts the tests run as child processes."""
