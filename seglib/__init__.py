"""seglib: the library behind the spine segmentation pipeline.

Data flows one way: files on disk -> split -> gray map and prepared arrays ->
training -> checkpoints and logs -> evaluation -> comparison. Stages in
`stages/` are thin entry points; everything they do lives here.
"""
import os
import platform

# The same bytes on the same kind of machine: ATen's vectorised kernels, oneDNN's
# convolutions and MKL pick their code path by the CPU's instruction set, and each
# path rounds differently. Pinned to AVX2 before torch runs its first operation (the
# thread count by runtime.threads), so every machine takes one path; CPU models still
# differ in the last bits (docs/determinism.md). SEGLIB_NATIVE_CPU=1 lets each
# library use its fastest path instead.
CPU_PINS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
if platform.machine().lower() in ("x86_64", "amd64") and os.environ.get("SEGLIB_NATIVE_CPU") != "1":
    os.environ.update(CPU_PINS)
