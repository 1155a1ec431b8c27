"""``meleewm ingest --ray``: the local pool's worker function, run as Ray tasks on a cluster.

Each task runs :func:`meleewm.replay.ingest.ingest_batch` on one batch: it reads its replays, hashes them, claims
the hashes, parses and writes the part's files under temporary names, exactly as a local worker does. The driver
commits each part as it comes back, as the local path does, so the dataset is the same (same games, same values),
a killed driver leaves only temporary files that the next run removes (Ray ends a job's workers with its driver),
and re-runs skip what is stored.

Every node must see the replays and the dataset folder at the same paths (a shared file system): tasks read the
files, write the parts and claim hashes (an exclusive create) there. Tar and 7z members still go as bytes. A task
is never retried: a retry would find its own claims taken and skip its games, so a lost task ends the run, and the
next run redoes what was not committed.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from concurrent.futures import Future

try:
    import ray
except ModuleNotFoundError as missing:
    raise ModuleNotFoundError("--ray needs Ray: pip install 'meleewm[ray]'", name="ray") from missing

from meleewm.replay import ingest as local
from meleewm.replay.sources import ReplayRef, close_archives

LOCAL = "local"  # Ray's own address for "start a new Ray on this machine" (for this run only)
OBJECT_STORE_BYTES = 256 * 1024 * 1024  # a local Ray's object store: batches of references and results are small


def _ingest_batch(run: local._Run, batch: list) -> tuple[str, local.BatchResult]:
    """The task: one batch, on whichever node Ray picked; returns that node's id with the result."""
    local._start_worker(run, None)
    try:
        return ray.get_runtime_context().get_node_id(), local.ingest_batch(batch)
    finally:
        local._run = None
        close_archives()


def _absolute(item):
    """A worker on another node has another working directory: references carry absolute paths (the recorded
    ``source`` keeps the name as given, so the dataset is the same as a local run's)."""
    return dataclasses.replace(item, path=os.path.abspath(item.path)) if isinstance(item, ReplayRef) else item


class RayTasks:
    """A Ray connection for one ingest run: ``submit(batch)`` gives a Future of the batch's result."""

    def __init__(self, address: str, run: local._Run):
        self.address, self.tasks_per_node = address, Counter()
        self._run = dataclasses.replace(run, root=run.root.resolve())

    def __enter__(self) -> RayTasks:
        options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if self.address == LOCAL:
            options["object_store_memory"] = OBJECT_STORE_BYTES
        ray.init(address=self.address, **options)
        # Spread: batches go to every node rather than filling the first one's CPUs.
        self._task = ray.remote(num_cpus=1, max_retries=0, scheduling_strategy="SPREAD")(_ingest_batch)
        self._run_ref = ray.put(self._run)  # the run's known hashes go to the object store once, not per task
        self.slots = 2 * max(int(ray.cluster_resources().get("CPU", 1)), 1)
        return self

    def __exit__(self, *exc) -> None:
        ray.shutdown()

    def submit(self, batch: list) -> Future:
        result: Future = Future()

        def settle(task: Future) -> None:
            try:
                node, batch_result = task.result()
            except BaseException as error:  # noqa: BLE001 - handed to the driver, which ends the run
                result.set_exception(error)
                return
            self.tasks_per_node[node] += 1
            result.set_result(batch_result)

        self._task.remote(self._run_ref, [_absolute(item) for item in batch]).future().add_done_callback(settle)
        return result
