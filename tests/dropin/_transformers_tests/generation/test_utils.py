"""Stand-in: the transformers 5.24.0 sdist does not ship `tests/generation/test_utils.py`.

`test_modeling_common.py` only imports `GenerationTesterMixin` from here (for an `issubclass` check); its generation
tests are not available, so they are not run. omni_hf's own generation checks are in tests/dropin/."""


class GenerationTesterMixin:
    """Empty: the real mixin is not in the 5.24.0 source distribution."""
