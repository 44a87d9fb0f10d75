"""A training run's life outside DVC's outputs: its epoch log after every epoch, and the state
that lets a stopped run resume from its last completed epoch.

The state file lives outside the stage's outputs (DVC deletes those before a
stage runs), is keyed by everything the run's result depends on (settings,
prepared data, code, library versions), so a changed input never resumes a
stale run, and is removed once the stage has written its outputs. Resuming
restores the weights, optimiser, schedule and every random generator, so the
result equals an uninterrupted run's, byte for byte on CPU. In several
training processes only the main one reads and writes these files.
"""
import dataclasses
import fcntl
import hashlib
import io
import json
import os
from pathlib import Path

import torch

from seglib import CPU_PINS
from seglib.checkpoint import load_tensors
from seglib.distributed import World
from seglib.errors import SegError
from seglib.epochlog import write_epoch_log
from seglib.io import write_bytes

CHUNK = 1 << 20


def run_key(settings, files):
    """Digest of `settings` (plain JSON values), of the bytes of `files`, and of what else changes
    results bit for bit: torch's version and the CPU pins in force."""
    environment = {"torch": torch.__version__, **{k: os.environ.get(k) for k in CPU_PINS}}
    digest = hashlib.sha256(json.dumps({"settings": settings, "environment": environment},
                                       sort_keys=True).encode())
    for path in files:
        digest.update(str(Path(path).name).encode())
        with open(path, "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
    return digest.hexdigest()


def training_key(name, configs, meta, files):
    """run_key of one model's training: its name, its settings (`configs`: section -> dataclass), the
    prepared meta, the bytes of `files` (prepared arrays, the stage script) and of seglib's code."""
    settings = {"model": name, **{k: dataclasses.asdict(c) for k, c in configs.items()}, "meta": meta.to_dict()}
    return run_key(settings, [*files, *sorted(Path(__file__).parent.glob("*.py"))])


class TrainingRun:
    """One model's training: its name, its epoch log and its resume state (both optional), and
    the World of training processes it runs in (only the main one touches the files)."""

    def __init__(self, name, log=None, state=None, key="", world=World()):
        self.name, self.log, self.state, self.key, self.world = name, log, state, key, world

    def _lock(self):
        """Hold this run's lock while the process lives, so two trainings of one run never race for its
        state and outputs (a leftover process, a second `dvc repro`); the lock dies with the process."""
        if self.state is None or not self.world.main:
            return
        path = Path(f"{self.state}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._held = open(path, "a+")
        try:
            fcntl.flock(self._held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._held.seek(0)
            holder = self._held.read().strip() or "unknown"
            raise SegError(f"{self.state}: another training of {self.name} is running (pid {holder}); wait for "
                           f"it to end or stop it (kill {holder}), then run again") from None
        self._held.truncate(0)
        self._held.write(str(os.getpid()))
        self._held.flush()

    def resume(self):
        """The saved state of this run's inputs, or None (no file, or one left by other inputs); every
        process gets the main process's answer. Called once the run's settings passed their checks, it
        first takes the run's lock (nothing is written before a check has failed)."""
        self._lock()
        return self.world.broadcast(self._saved() if self.world.main else None)

    def _saved(self):
        if self.state is None or not Path(self.state).is_file():
            return None
        try:
            saved = load_tensors(self.state, "resume state")
        except SegError as exc:  # never fatal: the run starts from epoch 1 instead
            print(f"warning: {exc}; training from the first epoch")
            return None
        if not isinstance(saved, dict) or saved.get("key") != self.key:
            print(f"note: {self.state} was left by other settings, data or code; training from the first epoch")
            return None
        return saved

    def epoch_done(self, history, state):
        """After each epoch: the epoch log so far (watch it while the run goes), then the resume state."""
        if not self.world.main:
            return
        if self.log is not None:
            write_epoch_log(self.log, history)
        if self.state is not None:
            buffer = io.BytesIO()
            torch.save({**state, "key": self.key}, buffer)
            write_bytes(self.state, buffer.getvalue())

    def finish(self):
        """The stage's outputs are written: the state has done its work."""
        if self.state is not None and self.world.main:
            Path(self.state).unlink(missing_ok=True)
