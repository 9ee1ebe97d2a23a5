"""Stand-in: the transformers 5.24.0 sdist does not ship `tests/exporters/test_export.py` (torch.export tests)."""


class ExportTesterMixin:
    """Empty: the real mixin is not in the 5.24.0 source distribution."""
