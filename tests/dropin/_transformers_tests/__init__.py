"""Vendored from the transformers 5.24.0 source distribution (`tests/`, Apache-2.0): the generic model tests.

`test_modeling_common.py` is copied unchanged. The sdist does not ship `tests/generation/test_utils.py` nor
`tests/exporters/test_export.py`, which it imports: `generation/test_utils.py` and `exporters/test_export.py` here are
empty stand-ins (so `GenerationTesterMixin` / `ExportTesterMixin` tests are not run; see tests/dropin/README.md).
"""
