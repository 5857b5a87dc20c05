"""Where the work runs: the device a flag names, random draws that leave the RNG as they found it, and
what the CPU can do (bfloat16 in hardware or not)."""
from contextlib import contextmanager
from pathlib import Path

import torch

from cli import InputError


def pick_device(name="auto"):
    """auto (CUDA when there is one, else the CPU), cpu, cuda or cuda:N; bad names raise InputError."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available here (use --device cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


@contextmanager
def one_cpu_thread():
    """Inside, the CPU's arithmetic runs on one thread, as it then can on every machine: a sum split over
    threads is added in another order, so a network trained on 2 threads ends with other weights than on 1
    (the judge of gz1_sdss_sample's seed-0 split: validation accuracy 0.802 against 0.810)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def forked_rng(device, seed=None):
    """Random draws inside (optionally from `seed`) leave the RNG of the CPU and of `device` as they were:
    a noisy decoder's figure or explorer image does not shift the draws of whatever runs next."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def cpu_info():
    """The first processor's fields in /proc/cpuinfo ("model name", "cpu family", "cpu MHz", "flags", ...);
    empty where there is no such file."""
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the blank line after the first processor
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_flags():
    """The CPU's feature flags (avx2, avx512f, avx512_bf16, ...), an empty set where unknown."""
    return set(cpu_info().get("flags", "").split())


def cpu_has_bf16():
    """Does this CPU do bfloat16 in hardware (AVX512-BF16 or AMX)? Elsewhere oneDNN emulates it."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def check_precision(precision, device):
    """bf16 training needs hardware bfloat16: a CUDA device that has it, or a CPU with AVX512-BF16 or
    AMX (elsewhere oneDNN emulates it, slower than fp32); raises InputError otherwise."""
    if precision != "bf16":
        return
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp32")
    if device.type == "cpu" and not cpu_has_bf16():
        raise InputError("--precision bf16: this CPU has neither AVX512-BF16 nor AMX; use fp32")
