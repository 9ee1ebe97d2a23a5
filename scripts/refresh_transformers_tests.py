#!/usr/bin/env python3
"""Refresh tests/dropin/_transformers_tests/ from the source distribution of the installed transformers.

    .venv/bin/python scripts/refresh_transformers_tests.py            # the installed version
    .venv/bin/python scripts/refresh_transformers_tests.py --version 5.25.0

Downloads `transformers==VERSION` from PyPI as an sdist (`pip download --no-binary :all:`), copies
`tests/test_modeling_common.py` unchanged, and the generation / exporter mixins it imports when the sdist ships them
(else the empty stand-ins stay), then writes the version into `VERSION`. Run the drop-in tests afterwards; the
tester in tests/dropin/test_transformers_generic.py may need new skips, each with its reason.
"""

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDORED = Path(__file__).resolve().parent.parent / "tests" / "dropin" / "_transformers_tests"
FILES = {  # path in the sdist -> path under VENDORED; only the first one is required
    "tests/test_modeling_common.py": "test_modeling_common.py",
    "tests/generation/test_utils.py": "generation/test_utils.py",
    "tests/exporters/test_export.py": "exporters/test_export.py",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=importlib.metadata.version("transformers"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as download:
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", download,
             f"transformers=={args.version}"],
        )  # fmt: skip
        if fetched.returncode:
            print(
                f"Could not download the transformers {args.version} sdist from PyPI: nothing refreshed",
                file=sys.stderr,
            )
            return 1
        (archive,) = Path(download).glob("transformers-*.tar.gz")
        with tarfile.open(archive) as tar:
            root = tar.getnames()[0].split("/")[0]
            members = {name: f"{root}/{name}" for name in FILES}
            names = set(tar.getnames())
            if members["tests/test_modeling_common.py"] not in names:
                print(f"{archive.name} has no tests/test_modeling_common.py: nothing refreshed", file=sys.stderr)
                return 1
            for source, target in FILES.items():
                if members[source] not in names:
                    print(f"kept the stand-in {target}: {archive.name} does not ship {source}")
                    continue
                destination = VENDORED / target
                staged = destination.with_name(destination.name + ".partial")
                with tar.extractfile(members[source]) as src, open(staged, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                staged.replace(destination)
                print(f"refreshed {target} from {archive.name}")
    (VENDORED / "VERSION").write_text(args.version + "\n")
    print(f"{VENDORED / 'VERSION'}: {args.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
