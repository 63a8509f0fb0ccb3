"""The benchmarks (``telemed bench ...``, ``python -m benchmarks.<name>``).

Some drive the test suite's fixtures (a real Orthanc, Chromium signed in to a room), and
``tests/`` is not an installed package: run through the ``telemed`` entry point, with the
source tree not on the path, they would not import it. The editable install leaves this
package in the source tree, beside ``tests/``: put that tree on the path when it is there.
"""

import sys
from pathlib import Path

_SOURCE_TREE = Path(__file__).resolve().parents[1]
if (_SOURCE_TREE / "tests" / "helpers.py").is_file() and str(_SOURCE_TREE) not in sys.path:
    sys.path.append(str(_SOURCE_TREE))
