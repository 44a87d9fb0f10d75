"""Training in several processes: torchrun launches them, DistributedDataParallel keeps their
weights equal, and a `World` says who this process is and sums what the processes counted.

`runtime.processes` above 1 makes the train stage relaunch itself under
torchrun on this machine (`--standalone`); a stage started by torchrun
directly (several machines, its rendezvous flags) takes the world from the
environment torchrun sets. Gloo on CPU, NCCL on CUDA, one GPU per process.
"""
import dataclasses
import os

import torch
import torch.distributed as dist

from seglib.errors import SegError

# what torchrun sets in every process it starts
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the training processes; one process is a world of one."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self):
        """Only the main process writes files."""
        return self.rank == 0

    def sum(self, tensor):
        """`tensor` summed over every process, in place (a no-op in a world of one)."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def gather(self, obj):
        """Every process's `obj`, in rank order."""
        if self.size == 1:
            return [obj]
        objects = [None] * self.size
        dist.all_gather_object(objects, obj)
        return objects

    def broadcast(self, obj):
        """The main process's `obj`, in every process."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def share_buffers(self, module):
        """The main process's batch-norm statistics in every process (each counted its own batches)."""
        if self.size > 1:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


def launched_by_torchrun():
    return all(name in os.environ for name in LAUNCH_VARIABLES)


def relaunch(module, argv, processes):
    """Run `python -m module argv` as `processes` processes under torchrun on this machine; raises
    SegError when any of them fails (their own messages are printed above)."""
    from torch.distributed import run as torchrun
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # join() gives each process its share of runtime.threads
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    try:
        # the stage's own arguments are set after parsing: torchrun's parser would take --log for its --log-dir
        launch = torchrun.parse_args(["--standalone", f"--nproc-per-node={processes}", "-m", module])
        launch.training_script_args = list(argv)
        torchrun.run(launch)
    except ChildFailedError as exc:
        raise SegError(f"runtime.processes: {len(exc.failures)} of {processes} training processes failed "
                       "(their messages are above)") from None


def join(device, threads):
    """This process's World and device: joins torchrun's process group when launched by it (gloo on
    CPU, NCCL on CUDA with one GPU per local process), and gives each local process its share of
    `threads` (0: of all cores)."""
    if not launched_by_torchrun():
        return World(), device
    world = World(*(int(os.environ[name]) for name in LAUNCH_VARIABLES))
    if device.type == "cuda":
        if world.local_size > torch.cuda.device_count():
            raise SegError(f"runtime.processes: {world.local_size} processes on this machine but only "
                           f"{torch.cuda.device_count()} CUDA GPU(s); use one process per GPU")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise SegError(f"runtime.device: several training processes run on cpu or cuda, not {device.type}")
    torch.set_num_threads(max(1, (threads or os.cpu_count()) // world.local_size))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def leave(world):
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
