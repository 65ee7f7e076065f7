"""Ray as an optional extra: is it here, what an address looks like, connecting (torch-free).

The GUI thread and the command line's checks import this module; it imports
Ray only inside :func:`require_ray` and :func:`connect`.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from dataclasses import dataclass
from typing import Any

from ...project.limits import quote
from ..errors import InputError

RAY_EXTRA = 'pip install "storystudio[ray]"'
AUTO = "auto"  # a Ray started here, on this computer's GPUs (or its processor when it has none)

# host:port (a node of the cluster, its GCS port, usually 6379) or ray://host:port (Ray Client, usually 10001)
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\])"
_ADDRESS = re.compile(rf"(?:ray://)?{_HOST}:(\d{{1,5}})")


class RayMissing(InputError):
    """Ray is not installed; the message says how to get it."""


def ray_missing(what: str = "Rendering through Ray", part: str = "Ray") -> RayMissing:
    """The one sentence saying that ``what`` needs ``part`` and how to get it, for this kind of install: pip
    can add the extra to an environment, but not to the packaged program, which carries no Ray."""
    if getattr(sys, "frozen", False):
        return RayMissing(f"{what} needs {part}, which the StoryStudio program does not include; install "
                          f"StoryStudio with pip to use it ({RAY_EXTRA}).")
    return RayMissing(f"{what} needs {part}, which is not installed; install it with {RAY_EXTRA}.")


def require_ray() -> Any:
    """The ``ray`` module, or :class:`RayMissing` saying in one line how to install it."""
    try:
        import ray
    except ImportError:
        raise ray_missing() from None
    return ray


def check_address(text: str) -> str:
    """The address as given (trimmed) when it can name a Ray cluster, else InputError in plain words."""
    value = (text or "").strip()
    if value.lower() == AUTO:
        return AUTO
    match = _ADDRESS.fullmatch(value)
    if match is None or not 0 < int(match.group(1)) < 65536:
        raise InputError(f"{quote(value)} is not a Ray cluster address; write auto, HOST:PORT (e.g. "
                         "10.0.0.5:6379) or ray://HOST:PORT (e.g. ray://gpu-server:10001).")
    return value


@dataclass
class Connection:
    """A connection to Ray; ``owned`` when :func:`connect` made it, so that ``close`` ends it (stopping a Ray
    started here, or leaving a cluster, which runs on)."""

    address: str
    owned: bool
    cpus: float
    gpus: float

    def close(self) -> None:
        if self.owned:
            import ray

            ray.shutdown()
            self.owned = False


def connect(address: str, num_cpus: int | None = None) -> Connection:
    """Connect to Ray at ``address`` (checked), or start one here for ``auto``.

    A Ray this process already holds (a test's, a benchmark's) is used as it
    is and left to its owner. InputError when the cluster cannot be reached.
    """
    ray = require_ray()
    address = check_address(address)
    owned = False
    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise ray_missing("A ray:// address", "Ray's client")
    if not ray.is_initialized():
        try:
            if address == AUTO:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as exc:  # Ray's own errors (ConnectionError, TimeoutError, RuntimeError...)
            ray.shutdown()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"Could not reach a Ray cluster at {quote(address)}: {reason[:200]}") from None
        owned = True
    resources = ray.cluster_resources()
    return Connection(address, owned, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)))


def connection_check(address: str, timeout: float = 60.0) -> str:
    """One line saying what a Ray cluster at ``address`` offers (for the app's Preferences), or InputError.

    The check connects from a process of its own, so that it never disturbs a
    connection this process holds (Ray keeps one per process). ``auto`` is not
    started by the check (it starts with the first render); its check says
    only that Ray is installed.
    """
    import json
    import subprocess
    import sys

    ray = require_ray()
    address = check_address(address)
    if address == AUTO:
        return f"Ray {ray.__version__} is installed; a Ray on this computer starts with the first render."
    try:
        run = subprocess.run([sys.executable, "-m", __name__, address], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise InputError(f"No Ray cluster answered at {quote(address)} within {timeout:g} s.") from None
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise InputError(f"Could not check the Ray cluster at {quote(address)} (the check ended with code "
                         f"{run.returncode}).")
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise InputError(answer["error"])
    return f"Connected: {answer['gpus']:g} GPU(s) and {answer['cpus']:g} processor core(s) at {address}."


def _probe(address: str) -> None:
    """``python -m storystudio.engine.distributed.cluster ADDRESS``: one JSON line about the cluster."""
    import json

    try:
        conn = connect(address)
    except InputError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return
    print(json.dumps({"cpus": conn.cpus, "gpus": conn.gpus}), flush=True)
    import ray

    ray.shutdown()


if __name__ == "__main__":
    import sys

    _probe(sys.argv[1] if len(sys.argv) > 1 else "")
