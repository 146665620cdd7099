"""How pytest-xdist spreads the suite over its workers (tests/conftest.py installs it).

Every test is a work unit of its own, except the tests of a file in `ONE_WORKER` and the tests
of a group in `ONE_WORKER_TESTS`, which go to one worker together (xdist hands out the largest
unit first).
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


# Test (node id) -> the group it shares a worker with, for a session fixture they share.
ONE_WORKER_TESTS = {
    # tests/conftest.py's `kept_demo`: one `scripts/demo --keep` run read by both.
    "tests/commands/test_cli.py::test_demo_runs_end_to_end": "demo",
    "tests/project/test_docs.py::test_the_front_page_example_runs_on_the_demo_registries": "demo",
}


class OneWorkerFiles(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        if nodeid in ONE_WORKER_TESTS:
            return f"group:{ONE_WORKER_TESTS[nodeid]}"
        path = nodeid.split("::", 1)[0]
        return path if path in ONE_WORKER else nodeid
