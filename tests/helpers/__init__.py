"""Test-only helpers (tiny ASR checkpoint, loading the checkout's recipe scripts); not part of the package."""
