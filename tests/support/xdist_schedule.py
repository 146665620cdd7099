"""How pytest-xdist spreads the suite over its workers (tests/conftest.py installs it).

Every test is a work unit of its own, except the tests of a file in `ONE_WORKER` and the tests
of a group in `ONE_WORKER_TESTS`, which go to one worker together.
xdist's own `xdist_group` marker would say this per test, but xdist 3.8 renames the test
(`item._nodeid`) to carry the group, and pytest 9 no longer reads that attribute: the
marker has no effect there, so the grouping is by file, here.

Units are handed out longest first (`LONG`, then xdist's order: more tests first, then as
collected): a worker idle at the end while another still runs a 20 s test is wall time lost.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

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

# Units that take longest, longest first: seconds on 4 workers on 2 cores (full runs of
# 2026-12-08; they vary with the machine's load). A unit not listed goes after these. A
# node id prefix names a file's tests, or a parametrized test's cases, each a unit of its own.
LONG = {
    "tests/project/test_image.py": 100,  # one unit: the image build (~40 s) and its tests
    "group:demo": 30,
    "tests/store/test_lock.py::test_two_pods_on_one_volume_and_syncer_tag_during_a_copy": 25,
    "tests/store/test_crash.py::test_kill_9_at_any_moment_leaves_complete_refs": 15,
    "tests/sync/test_sync.py::test_full_noop_incremental": 14,
    "tests/sync/test_hub_budget.py::test_reserve_is_kept_and_the_rest_deferred": 13,
    "tests/sync/test_faults.py::test_kill_9_mid_copy_then_rerun_completes": 12,
    "tests/service/test_event_queue.py::test_a_full_queue_answers_503_with_retry_after": 10,
    "tests/service/test_http_limits.py::test_slow_clients_are_cut_at_the_deadline": 10,
    "tests/service/test_http_limits.py::test_accept_errors_neither_spin_nor_flood_the_log": 10,
    "tests/store/test_lock.py::test_racers_taking_over_a_dead_writers_lock_exactly_one_wins": 9,
    "tests/service/test_schedule.py::test_sigterm_": 8,
    "tests/sync/test_hub_budget.py::test_schedule_groups_running_at_once_share_one_budget": 8,
    "tests/sync/test_sync.py::test_cancelled_run_leaves_no_broken_tag": 7,
    "tests/store/test_layout_files.py": 6,
    "tests/commands/test_cli.py::test_sigterm_stops_a_sync_cleanly": 6,
    "tests/service/test_status_page.py::test_status_page_after_a_real_run": 6,
    "tests/sync/test_hub_budget.py::test_one_shot_sync_keeps_the_reserve_across_schedule_gr": 5,
    "tests/commands/test_cli.py::test_shards_together_copy_every_tag_exactly_once": 5,
    "tests/store/test_bundle.py::test_a_delta_carries_only_new_blobs_and_imports_onto_the_e": 5,
    "tests/commands/test_search_index.py::test_errors_are_one_line_and_exit_1": 5,
    "tests/store/test_disk_errors.py": 5,
}


def expected_seconds(scope: str) -> float:
    """How long `scope` (a work unit's name) is known to take; 0 when not in `LONG`."""
    return max((s for prefix, s in LONG.items() if scope.startswith(prefix)), default=0.0)


class OneWorkerFiles(LoadScopeScheduling):
    _ordered = False

    def _split_scope(self, nodeid: str) -> str:
        if nodeid in ONE_WORKER_TESTS:
            return f"group:{ONE_WORKER_TESTS[nodeid]}"
        path = nodeid.split("::", 1)[0]
        return path if path in ONE_WORKER else nodeid

    def _assign_work_unit(self, node: Any) -> None:
        # The queue is complete when the first unit is handed out (xdist fills it, in its
        # order, just before): put the long units first, once, keeping xdist's order otherwise.
        if not self._ordered:
            self._ordered = True
            units = list(self.workqueue.items())
            units.sort(key=lambda unit: -expected_seconds(unit[0]))  # stable
            self.workqueue = OrderedDict(units)
        super()._assign_work_unit(node)
