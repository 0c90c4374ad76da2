#!/usr/bin/env python3
"""Chaos harness for roster: the production shape under random faults, then every promise checked.

The entry point only: the harness is the package beside it, `benches/chaos/` (its
`__init__` says what a run does and what it checks; each module says what it owns).

    python3 benches/chaos.py --roster target/release/roster           # about 10 minutes
    python3 benches/chaos.py --roster target/release/roster --quick   # under 4 minutes (CI)
"""

import sys
from pathlib import Path

# The package `chaos/` sits beside this file (as a directory it is found before this
# module of the same name); the directory is on the path already when run as a script.
# No __pycache__ left in the repository's tree by a run.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos.main import main  # noqa: E402

if __name__ == "__main__":
    main()
