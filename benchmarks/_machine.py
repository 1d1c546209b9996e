"""What machine a benchmark ran on, recorded beside its figures."""

import os
import platform
import subprocess


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, or None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info():
    """Platform, Python, CPU counts (os and nproc, which honours affinity) and model."""
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "os_cpu_count": os.cpu_count(),
    }
    try:
        info["nproc"] = int(
            subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
        )
    except (OSError, ValueError):
        info["nproc"] = None
    model = cpu_model()
    if model is not None:
        info["cpu_model"] = model
    return info
