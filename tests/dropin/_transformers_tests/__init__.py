"""Vendored from a transformers source distribution (`tests/`, Apache-2.0; its version is in `VERSION`).

`test_modeling_common.py` is copied unchanged by `scripts/refresh_transformers_tests.py`. The 5.24.0 sdist does not ship `tests/generation/test_utils.py` nor
`tests/exporters/test_export.py`, which it imports: `generation/test_utils.py` and `exporters/test_export.py` here are
empty stand-ins (so `GenerationTesterMixin` / `ExportTesterMixin` tests are not run; see tests/dropin/README.md).
"""
