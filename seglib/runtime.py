"""Where and how a stage computes: the device, CPU threads, deterministic kernels, precision, and
what the CPU can do (its name and flags, for warnings and benchmark reports)."""
import os
import platform
import sys
import threading
import time
from pathlib import Path

import torch

from seglib import CPU_PINS, config
from seglib.errors import SegError


def resolve_device(name, where="runtime.device"):
    """A torch.device for `name`; one message when the form is wrong or the device is absent."""
    config.check_device(name, where)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SegError(f"{where}: {name!r} asked for but no CUDA GPU is visible; use auto or cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise SegError(f"{where}: {name!r} asked for but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SegError(f"{where}: 'mps' asked for but no Apple GPU (MPS) is available here; use auto or cpu")
    return torch.device(name)


def _deterministic_kernels(mode, warn_only=False):
    """torch.use_deterministic_algorithms for eager code. The public call also sets torch.compile's
    inductor flag, whose import costs every stage process 1.7 s; no stage compiles (bench.precision's
    torch.compile times speed, not bytes)."""
    torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


def use_runtime(runtime_cfg, where="runtime.device"):
    """Pin torch's CPU threads (0 keeps its default: the count changes results bit for bit), choose
    deterministic kernels or cuDNN's fastest (runtime.deterministic); return the device."""
    if runtime_cfg.threads:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if cores and runtime_cfg.threads > cores:
            print(f"warning: runtime.threads: {runtime_cfg.threads} threads on {cores} cores oversubscribe them "
                  f"(measured: an epoch 42x slower); set at most {cores}, or 0 for torch's default")
        torch.set_num_threads(runtime_cfg.threads)
    device = resolve_device(runtime_cfg.device, where)
    if runtime_cfg.deterministic:
        # cuBLAS reproduces its sums only with a fixed workspace, set before its first call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        _deterministic_kernels(True, warn_only=True)
    else:
        _deterministic_kernels(False)
        torch.backends.cudnn.benchmark = True
    return device


def check_precision(device, precision, where):
    """fp16 needs a CUDA GPU; bf16 on a GPU needs one that has it (Ampere or later). bf16 on a CPU
    that cannot use bf16 units gets a warning: it runs, many times slower than fp32."""
    if precision == "fp16" and device.type != "cuda":
        raise SegError(f"{where}.precision: fp16 (with a gradient scaler) is for CUDA GPUs without bf16; "
                       f"on {device.type} use fp32 or bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SegError(f"{where}.precision: this GPU ({torch.cuda.get_device_name(device)}) has no bf16; use fp16")
    slow = cpu_bf16_slowness() if precision == "bf16" and device.type == "cpu" else None
    if slow:
        print(f"warning: {where}.precision: bf16 {slow}")


def cpu_name(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name as the kernel reports it ("AMD EPYC", "Intel(R) Xeon(R) ...")."""
    path = Path(cpuinfo)
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def describe(device):
    """What a run computed on, as its results record it: the GPU, or the CPU model with the thread count
    and whether the ISA pins held (the three things that change CPU results bit for bit)."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    if device.type != "cpu":
        return device.type
    pinned = all(os.environ.get(key) == value for key, value in CPU_PINS.items())
    pins = "ISA pinned to AVX2" if pinned else "native ISA"
    threads = torch.get_num_threads()
    return f"{cpu_name()} (cpu, {threads} thread{'s' if threads > 1 else ''}, {pins})"


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (avx2, amx_bf16, ...) as a set, or None where they cannot be read (not Linux)."""
    path = Path(cpuinfo)
    if not path.is_file():
        return None
    return next((set(line.split(":", 1)[1].split()) for line in path.read_text().splitlines()
                 if line.startswith("flags")), None)


def cpu_bf16_slowness(cpuinfo="/proc/cpuinfo"):
    """Why bf16 will be slow on this CPU, or None where it can use AMX or AVX512-BF16 (or the CPU's
    flags cannot be read). Without those units oneDNN emulates bf16: measured 10x slower than fp32
    (docs/benchmarks.md)."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return None
    if "amx_bf16" not in flags and "avx512_bf16" not in flags:
        return ("on this CPU (no AMX or AVX512-BF16) is emulated, about 10x slower than fp32 "
                "(docs/benchmarks.md); use fp32")
    if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2":
        return ("here runs about 10x slower than fp32: this CPU has bf16 units, but the ISA pins of "
                "docs/determinism.md keep oneDNN on AVX2; SEGLIB_NATIVE_CPU=1 uses them (about 3x faster "
                "than fp32 for UNet, results then differ between machines), or use fp32")
    return None


def autocast(device, precision):
    """bf16 or fp16 autocast (convolutions in half precision, reductions in float32), or plain fp32.

    On recent GPUs, and on CPUs with AMX once SEGLIB_NATIVE_CPU=1 lifts the ISA
    pins, bf16 trains UNet 2-3x faster (bench/precision.py); the weights stay float32.
    """
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision in ("bf16", "fp16"))


def _alive(pid):
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (OSError, IndexError):
        return False


def _dvc_ancestors():
    """The PIDs from this process's parent up to the dvc process that launched it (Linux), or []."""
    chain, pid = [], os.getppid()
    while pid > 1:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return []
        chain.append(pid)
        if any(Path(arg.decode(errors="replace")).name == "dvc" for arg in argv[:3]) or argv[1:3] == [b"-m", b"dvc"]:
            return chain
        pid = parent
    return []


def end_with_dvc(poll=0.5):
    """A stage that dvc launched ends as soon as dvc (or a process between them) is gone.

    `kill <dvc pid>`, or a scheduler that signals only its child, ends dvc
    alone: its stage would live on under PID 1, finish the old settings' run
    and overwrite the next run's outputs. A watcher thread exits this process
    (code 143, like SIGTERM) within `poll` seconds instead; every output is
    written whole or not at all, so nothing half-written is left.
    """
    chain = _dvc_ancestors() if "DVC_STAGE" in os.environ else []
    if not chain:
        return

    def watch():
        while all(_alive(pid) for pid in chain):
            time.sleep(poll)
        print(f"\n{os.environ['DVC_STAGE']}: dvc (pid {chain[-1]}) is gone; stopping without writing more",
              file=sys.stderr, flush=True)
        os._exit(143)

    threading.Thread(target=watch, name="end-with-dvc", daemon=True).start()
