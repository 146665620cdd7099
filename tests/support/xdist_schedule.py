"""How pytest-xdist spreads the suite over its workers (tests/conftest.py installs it).

Every test is a work unit of its own, except the tests of a file in `ONE_WORKER`, which go
to one worker together and before anything else (xdist hands out the largest unit first).
xdist's own `xdist_group` marker would say this per test, but xdist 3.8 renames the test
(`item._nodeid`) to carry the group, and pytest 9 no longer reads that attribute: the
marker has no effect there, so the grouping is by file, here.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

# File -> why its tests must share one worker.
ONE_WORKER = {
    # A session fixture builds the image once per worker, under one fixed name and storage:
    # on two workers the builds would cost twice and replace each other's image.
    "tests/project/test_image.py": "buildah image build",
}


class OneWorkerFiles(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return path if path in ONE_WORKER else nodeid
