"""pytest plugin (``-p mutant_import_hook``) that imports one module from a mutated copy.

``mutate.py`` starts pytest with this plugin and three environment variables:

* ``SPIRAL_MUTANT_MODULE``: dotted name of the module under test (e.g. ``spiral.learning.vtrace``);
* ``SPIRAL_MUTANT_PATH``: the mutated source file to load instead of the real one;
* ``SPIRAL_MUTANT_MARKER``: a file this hook writes when it served the mutant, so the driver can
  tell "the tests passed against the mutant" from "the tests never imported it".

The real file is never touched, so an interrupted run cannot leave a mutant behind in the shared
checkout. A finder placed first on ``sys.meta_path`` wins over the editable install's finder and
over ``sys.path``. Plugins given with ``-p`` are imported before any conftest or test module, so
the module cannot have been imported from the real file yet; the hook checks that anyway.

Hypothesis runs derandomised and without its example database: the verdict on a mutant must not
depend on luck, and failing examples of mutants must not land in the shared ``.hypothesis`` folder.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

MODULE = os.environ["SPIRAL_MUTANT_MODULE"]
MUTANT_PATH = Path(os.environ["SPIRAL_MUTANT_PATH"])
MARKER = Path(os.environ["SPIRAL_MUTANT_MARKER"])


class MutantFinder(importlib.abc.MetaPathFinder):
    """Finds only ``MODULE``, and finds it in ``MUTANT_PATH``."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201 - importlib protocol
        if fullname != MODULE:
            return None
        MARKER.write_text(str(MUTANT_PATH))
        return importlib.util.spec_from_file_location(fullname, MUTANT_PATH)


if MODULE in sys.modules:
    raise RuntimeError(f"{MODULE} was imported before the mutation hook was installed; its mutant would not be tested")
sys.meta_path.insert(0, MutantFinder())

try:
    from hypothesis import settings
except ImportError:  # pragma: no cover - every module's tests here use Hypothesis, but the hook does not need it
    pass
else:
    settings.register_profile("mutation", database=None, derandomize=True, deadline=None, print_blob=False)
    settings.load_profile("mutation")
