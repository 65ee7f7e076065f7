"""Install StoryStudio with the PyTorch build this computer can use.

    python3 packaging/install.py               look at this computer, choose the PyTorch build, install into .venv,
                                               add StoryStudio to the desktop menu (Linux)
    python3 packaging/install.py --dry-run     only say what was found, what was chosen and the exact commands
    python3 packaging/install.py --torch ask   ask which build to use (the one found is the default)
    python3 packaging/install.py --torch cu128 choose it yourself: auto, ask, cpu, cuda, cuXXX, rocm, rocmX.Y, mps, xpu
    python3 packaging/install.py --tool uv     install with uv (its --torch-backend) instead of pip

A plain ``pip install storystudio`` takes PyPI's PyTorch, which on Linux is the
CUDA build (several GB of GPU libraries, useless without an NVIDIA GPU) and on
Windows the CPU build (no GPU at all). This script installs PyTorch first from
the PyTorch index that fits the machine, so that the project's own install finds
it already there and pulls nothing more.

It uses the standard library only, because it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTORCH_INDEX = "https://download.pytorch.org/whl/"


class InstallError(Exception):
    """Something the user has to know or change; the message is one plain sentence (or two)."""


# ---- what PyTorch publishes -----------------------------------------------------------
@dataclass(frozen=True)
class CudaBuild:
    """One CUDA build of PyTorch (an index on the PyTorch download site) and what it needs."""

    tag: str
    linux_driver: tuple[int, ...]    # the NVIDIA driver this CUDA release needs (its release notes)
    windows_driver: tuple[int, ...]
    oldest_gpu: tuple[int, int]      # oldest compute capability its wheels are built for
    newest_gpu: tuple[int, int] | None = None  # None: also the newest GPUs (Blackwell and on)


# Newest first. When PyTorch moves to new CUDA releases, this table is the one place to change.
CUDA_BUILDS = (
    CudaBuild("cu130", (580, 65, 6), (580, 88), (7, 5)),
    CudaBuild("cu128", (570, 26), (570, 65), (7, 0)),
    CudaBuild("cu126", (560, 28, 3), (560, 76), (5, 0), newest_gpu=(9, 0)),
)
# CUDA 12 builds also run on older 12.x drivers ("minor version compatibility"), from these versions on.
CUDA12_MINOR_COMPAT = {"Linux": (525, 60, 13), "Windows": (528, 33)}
ROCM_BUILD = "rocm6.4"
# GPU architectures PyTorch's ROCm wheels are built for (gfx9 data-centre, RDNA2/3/4 desktop cards).
ROCM_GPUS = ("gfx900", "gfx906", "gfx908", "gfx90a", "gfx942", "gfx950", "gfx1030", "gfx1100", "gfx1101",
             "gfx1102", "gfx1200", "gfx1201")
KINDS = ("cpu", "cuda", "rocm", "mps", "xpu")


# ---- the machine ----------------------------------------------------------------------
@dataclass(frozen=True)
class NvidiaGpu:
    name: str
    compute_capability: tuple[int, int] | None = None


@dataclass(frozen=True)
class Machine:
    system: str                      # "Linux", "Windows", "Darwin"
    arch: str                        # "x86_64" or "arm64"
    nvidia_driver: tuple[int, ...] | None = None
    nvidia_gpus: tuple[NvidiaGpu, ...] = ()
    amd_gpus: tuple[str, ...] = ()   # gfx names of AMD GPUs the amdgpu driver offers for compute

    def describe(self) -> str:
        parts = [f"{self.system} {self.arch}"]
        if self.nvidia_gpus or self.nvidia_driver:
            names = ", ".join(g.name for g in self.nvidia_gpus) or "an NVIDIA GPU"
            driver = ".".join(map(str, self.nvidia_driver)) if self.nvidia_driver else "unknown"
            parts.append(f"{names} (NVIDIA driver {driver})")
        if self.amd_gpus:
            parts.append("AMD GPU " + ", ".join(self.amd_gpus))
        if len(parts) == 1 and self.system != "Darwin":
            parts.append("no NVIDIA or AMD GPU found")
        return ", ".join(parts)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def _run_text(run, argv: list[str]) -> str | None:
    try:
        done = run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def find_nvidia(run=subprocess.run, which=shutil.which) -> tuple[tuple[int, ...] | None, tuple[NvidiaGpu, ...]]:
    """The NVIDIA driver version and GPUs, from nvidia-smi (which comes with the driver)."""
    smi = which("nvidia-smi")
    if smi is None:
        return None, ()
    out = _run_text(run, [smi, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"])
    if out is None:  # drivers older than 510 do not know compute_cap
        out = _run_text(run, [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if not out:
        return None, ()
    driver, gpus = None, []
    for line in out.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 2:
            continue
        driver = _version(cells[1]) or driver
        cc = _version(cells[2]) if len(cells) > 2 else ()
        gpus.append(NvidiaGpu(cells[0], (cc[0], cc[1]) if len(cc) >= 2 else None))
    return driver, tuple(gpus)


def find_amd(sys_root: Path = Path("/")) -> tuple[str, ...]:
    """gfx names of the GPUs that the amdgpu kernel driver offers for compute (Linux's KFD topology)."""
    nodes = sys_root / "sys/class/kfd/kfd/topology/nodes"
    if not (sys_root / "dev/kfd").exists() or not nodes.is_dir():
        return ()
    found = []
    for props in sorted(nodes.glob("*/properties")):
        try:
            text = props.read_text()
        except OSError:
            continue
        match = re.search(r"^gfx_target_version\s+(\d+)", text, re.MULTILINE)
        if match and int(match.group(1)):  # 0 is a CPU node
            v = int(match.group(1))
            found.append(f"gfx{v // 10000}{(v // 100) % 100:x}{v % 100:x}")
    return tuple(dict.fromkeys(found))


def detect_machine(run=subprocess.run, which=shutil.which, sys_root: Path = Path("/")) -> Machine:
    system = platform.system()
    arch = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(),
                                                                         platform.machine().lower())
    driver, gpus = (None, ()) if system == "Darwin" else find_nvidia(run, which)
    amd = find_amd(sys_root) if system == "Linux" else ()
    return Machine(system, arch, driver, gpus, amd)


# ---- the choice -----------------------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    backend: str                     # the PyTorch index name (uv's --torch-backend): cpu, cu128, rocm6.4, ...
    kind: str                        # one of KINDS
    index_url: str | None            # None: the ordinary package index (PyPI)
    reason: str
    notes: tuple[str, ...] = field(default=())


def _cuda_builds_for(machine: Machine) -> list[CudaBuild]:
    """CUDA builds whose wheels cover every NVIDIA GPU of the machine (and exist for its platform)."""
    builds = []
    for build in CUDA_BUILDS:
        if machine.arch == "arm64" and build.tag == "cu126":
            continue  # Linux ARM CUDA wheels start with CUDA 12.8
        ccs = [g.compute_capability for g in machine.nvidia_gpus if g.compute_capability]
        if any(cc < build.oldest_gpu for cc in ccs):
            continue
        if build.newest_gpu and any(cc > build.newest_gpu for cc in ccs):
            continue
        builds.append(build)
    return builds


def _choose_cuda(machine: Machine) -> Choice:
    driver = machine.nvidia_driver
    builds = _cuda_builds_for(machine)
    if not builds:
        gpus = ", ".join(g.name for g in machine.nvidia_gpus)
        raise InstallError(f"PyTorch's current CUDA builds do not support {gpus}; install with --torch cpu.")
    if driver is None:
        build = builds[-1]
        return Choice(build.tag, "cuda", PYTORCH_INDEX + build.tag, "CUDA was asked for; no NVIDIA driver was "
                      f"found to choose by, so the most widely compatible CUDA build ({build.tag}) is used.",
                      ("It needs an NVIDIA driver; run nvidia-smi to check the driver once it is installed.",))
    needs = (lambda b: b.windows_driver) if machine.system == "Windows" else (lambda b: b.linux_driver)
    shown = ".".join(map(str, driver))
    for build in builds:
        if driver >= needs(build):
            return Choice(build.tag, "cuda", PYTORCH_INDEX + build.tag,
                          f"NVIDIA driver {shown} runs PyTorch's {build.tag} build, the newest one it can.")
    compat = CUDA12_MINOR_COMPAT.get(machine.system)
    cuda12 = [b for b in builds if b.tag.startswith("cu12")]
    if compat and cuda12 and driver >= compat:
        build = cuda12[-1]
        return Choice(build.tag, "cuda", PYTORCH_INDEX + build.tag,
                      f"NVIDIA driver {shown} runs PyTorch's {build.tag} build through CUDA's minor version "
                      "compatibility.",
                      (f"A driver {'.'.join(map(str, needs(build)))} or newer is recommended for it.",))
    oldest = ".".join(map(str, compat or needs(builds[-1])))
    raise InstallError(f"The NVIDIA driver {shown} is too old for PyTorch's CUDA builds (they need {oldest} or "
                       "newer). Update the driver and run this again, or install with --torch cpu.")


def _cpu(machine: Machine, reason: str, *notes: str) -> Choice:
    # macOS has only PyPI's builds; elsewhere the CPU index keeps the GPU libraries out
    index = None if machine.system == "Darwin" else PYTORCH_INDEX + "cpu"
    return Choice("cpu", "cpu", index, reason, tuple(notes))


def choose(machine: Machine, wanted: str = "auto") -> Choice:
    """The PyTorch build for this machine: found (``auto``) or as asked (a kind or an exact index name)."""
    wanted = wanted.strip().lower()
    if machine.system == "Darwin":
        if machine.arch != "arm64":
            raise InstallError("PyTorch publishes no builds for Intel Macs after version 2.2, and StoryStudio needs "
                               "2.3 or newer: it runs on Macs with Apple silicon.")
        if wanted in ("auto", "mps"):
            return Choice("mps", "mps", None, "A Mac with Apple silicon: PyPI's PyTorch uses its GPU (MPS).")
        if wanted == "cpu":
            return _cpu(machine, "The CPU build was asked for (on a Mac it is the same package as MPS).")
        raise InstallError(f'"{wanted}" builds of PyTorch do not exist for macOS; use mps or cpu.')
    if wanted == "mps":
        raise InstallError("MPS is the GPU of Macs with Apple silicon; on this computer use auto, cpu, cuda or rocm.")
    if wanted == "cpu":
        return _cpu(machine, "The CPU build was asked for.")
    if wanted == "xpu":
        return Choice("xpu", "xpu", PYTORCH_INDEX + "xpu", "The Intel GPU (XPU) build was asked for.",
                      ("It needs Intel's GPU driver; StoryStudio has not been tested on it.",))
    if wanted == "cuda" or re.fullmatch(r"cu\d{3}", wanted):
        if machine.system not in ("Linux", "Windows"):
            raise InstallError("CUDA builds of PyTorch exist for Linux and Windows only.")
        if wanted == "cuda":
            return _choose_cuda(machine)
        if not any(b.tag == wanted for b in CUDA_BUILDS):
            known = ", ".join(b.tag for b in CUDA_BUILDS)
            return Choice(wanted, "cuda", PYTORCH_INDEX + wanted, f"The {wanted} build was asked for.",
                          (f"StoryStudio knows {known}; {wanted} is used as given.",))
        return Choice(wanted, "cuda", PYTORCH_INDEX + wanted, f"The {wanted} build was asked for.")
    if wanted == "rocm" or re.fullmatch(r"rocm\d+(\.\d+)*", wanted):
        if machine.system != "Linux" or machine.arch != "x86_64":
            raise InstallError("ROCm builds of PyTorch exist for Linux on x86-64 only; use --torch cpu here.")
        tag = ROCM_BUILD if wanted == "rocm" else wanted
        return Choice(tag, "rocm", PYTORCH_INDEX + tag, f"The {tag} build was asked for.")
    if wanted != "auto":
        raise InstallError(f'"{wanted}" is not a PyTorch build; choose one of auto, ask, cpu, cuda, cuXXX (e.g. '
                           f'{CUDA_BUILDS[0].tag}), rocm, rocmX.Y, mps, xpu.')

    if machine.nvidia_gpus or machine.nvidia_driver:
        try:
            return _choose_cuda(machine)
        except InstallError as exc:
            return _cpu(machine, "The NVIDIA GPU cannot be used: the CPU build is installed.", str(exc))
    if machine.amd_gpus:
        usable = [g for g in machine.amd_gpus if g in ROCM_GPUS]
        if machine.system == "Linux" and machine.arch == "x86_64" and usable:
            return Choice(ROCM_BUILD, "rocm", PYTORCH_INDEX + ROCM_BUILD,
                          f"AMD GPU {usable[0]} runs PyTorch's {ROCM_BUILD} build.")
        return _cpu(machine, f"PyTorch's ROCm builds do not support AMD GPU {', '.join(machine.amd_gpus)}: "
                    "the CPU build is installed.")
    return _cpu(machine, "No GPU that PyTorch can use was found: the CPU build keeps GPU libraries off this "
                "computer.")


def alternatives(machine: Machine) -> list[str]:
    """What ``--torch ask`` offers on this machine."""
    if machine.system == "Darwin":
        return ["mps", "cpu"]
    offered = ["cpu"] + [b.tag for b in _cuda_builds_for(machine)]
    if machine.system == "Linux" and machine.arch == "x86_64":
        offered.append(ROCM_BUILD)
    return offered


def ask(machine: Machine, found: Choice, read=input, write=print) -> Choice:
    options = alternatives(machine)
    write(f"PyTorch build [{found.backend}] ({', '.join(options)}): ", end="")
    answer = read().strip().lower()
    return found if not answer or answer == found.backend else choose(machine, answer)


# ---- the commands ---------------------------------------------------------------------
def torch_requirement(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The project's own torch requirement (one place for it: pyproject.toml)."""
    match = re.search(r'^\s*"(torch\s*[<>=!~][^"]*)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
    if not match:
        raise InstallError(f"{pyproject} names no torch requirement.")
    return match.group(1).replace(" ", "")


def venv_python(venv: Path, system: str) -> Path:
    return venv / "Scripts" / "python.exe" if system == "Windows" else venv / "bin" / "python"


def venv_script(venv: Path, system: str, name: str) -> Path:
    return venv / "Scripts" / f"{name}.exe" if system == "Windows" else venv / "bin" / name


def installed_torch(venv: Path) -> str | None:
    """The version of torch already in the environment (e.g. "2.13.0+cpu"), read from its metadata folder."""
    for info in sorted(venv.glob("[Ll]ib/python*/site-packages/torch-*.dist-info")) + \
            sorted(venv.glob("Lib/site-packages/torch-*.dist-info")):
        return info.name.removeprefix("torch-").removesuffix(".dist-info")
    return None


def torch_fits(version: str, choice: Choice) -> bool:
    """Whether an installed torch is the build chosen: the PyTorch index marks its builds (+cpu, +cu128, ...),
    PyPI's have no mark."""
    local = version.partition("+")[2] or None
    return local == (choice.backend if choice.index_url else None)


@dataclass(frozen=True)
class Step:
    what: str
    argv: tuple[str, ...]


def plan(choice: Choice, machine: Machine, *, venv: Path, tool: str = "pip", python: str = sys.executable,
         project: str = ".", extras: str = "", editable: bool = True, torch_spec: str | None = None,
         torch_index: str | None = None, desktop: bool | None = None, venv_exists: bool = False,
         torch_present: str | None = None) -> list[Step]:
    """The exact commands that install this choice. ``torch_index`` replaces the index URL ("pypi": none);
    ``torch_present`` is the torch already in the environment, replaced when it is another build."""
    spec = torch_spec or torch_requirement()
    index = choice.index_url if torch_index is None else (None if torch_index == "pypi" else torch_index)
    py = str(venv_python(venv, machine.system))
    target = project + (f"[{extras}]" if extras else "")
    install_target = ("-e", target) if editable else (target,)
    steps = []
    replace = torch_present is not None and torch_index is None and not torch_fits(torch_present, choice)
    if tool == "uv":
        uv = shutil.which("uv") or "uv"
        if not venv_exists:
            steps.append(Step("make the environment", (uv, "venv", str(venv), "--python", python)))
        if replace:
            steps.append(Step(f"take out the PyTorch build there ({torch_present})",
                              (uv, "pip", "uninstall", "--python", py, "torch")))
        torch_source = ("--index-url", index) if index else ()
        if torch_index is None and choice.kind != "mps":
            torch_source = ("--torch-backend", choice.backend)  # uv knows the PyTorch indexes itself
        steps.append(Step(f"install PyTorch ({choice.backend})",
                          (uv, "pip", "install", "--python", py, spec, *torch_source)))
        steps.append(Step("install StoryStudio", (uv, "pip", "install", "--python", py, *install_target)))
    elif tool == "pip":
        if not venv_exists:
            steps.append(Step("make the environment", (python, "-m", "venv", str(venv))))
        if replace:
            steps.append(Step(f"take out the PyTorch build there ({torch_present})",
                              (py, "-m", "pip", "uninstall", "-y", "torch")))
        steps.append(Step(f"install PyTorch ({choice.backend})",
                          (py, "-m", "pip", "install", spec, *(("--index-url", index) if index else ()))))
        steps.append(Step("install StoryStudio", (py, "-m", "pip", "install", *install_target)))
    else:
        raise InstallError(f'"{tool}" is not an installer this script knows; use pip or uv.')
    if desktop if desktop is not None else machine.system == "Linux":
        steps.append(Step("add StoryStudio to the desktop menu and open .storystudio files with it",
                          (str(venv_script(venv, machine.system, "storystudio")), "install-desktop")))
    return steps


def shown(argv: tuple[str, ...], system: str) -> str:
    """A command as the user would type it in their shell (for the dry run and the log)."""
    if system != "Windows":
        return shlex.join(argv)
    # list2cmdline quotes only blanks; cmd.exe and PowerShell would take <, >, | and & as redirections
    return " ".join(f'"{a}"' if set(a) & set(' <>|&^') and '"' not in a else subprocess.list2cmdline([a])
                    for a in argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch", default="auto", metavar="BUILD",
                        help="auto (default), ask, cpu, cuda, cuXXX, rocm, rocmX.Y, mps or xpu")
    parser.add_argument("--tool", default="auto", choices=["auto", "pip", "uv"],
                        help="installer (auto: uv when it is on the PATH, else pip)")
    parser.add_argument("--venv", default=str(ROOT / ".venv"), help="the environment to make or use (default .venv)")
    parser.add_argument("--extras", default="", help='optional extras, e.g. "test"')
    parser.add_argument("--no-editable", action="store_true", help="install a copy instead of this checkout")
    parser.add_argument("--no-desktop", action="store_true", help="do not add the desktop menu entry (Linux)")
    parser.add_argument("--torch-spec", default=None, help="the torch requirement (default: pyproject.toml's)")
    parser.add_argument("--torch-index", default=None, metavar="URL",
                        help='install torch from this index instead ("pypi": the ordinary one, e.g. a mirror)')
    parser.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    args = parser.parse_args(argv)
    try:
        machine = detect_machine()
        if sys.version_info < (3, 10):
            raise InstallError(f"StoryStudio needs Python 3.10 or newer; this is {platform.python_version()}.")
        choice = choose(machine, "auto" if args.torch == "ask" else args.torch)
        print(f"This computer: {machine.describe()}.")
        if args.torch == "ask":
            choice = ask(machine, choice)
        print(f"PyTorch build: {choice.backend}. {choice.reason}")
        for note in choice.notes:
            print(f"  {note}")
        tool = args.tool if args.tool != "auto" else ("uv" if shutil.which("uv") else "pip")
        venv = Path(args.venv)
        steps = plan(choice, machine, venv=venv, tool=tool, project=str(ROOT), extras=args.extras,
                     editable=not args.no_editable, torch_spec=args.torch_spec, torch_index=args.torch_index,
                     desktop=False if args.no_desktop else None,
                     venv_exists=venv_python(venv, machine.system).exists(), torch_present=installed_torch(venv))
        for step in steps:
            print(f"- {step.what}:\n    {shown(step.argv, machine.system)}")
            if not args.dry_run:
                done = subprocess.run(step.argv)
                if done.returncode != 0:
                    raise InstallError(f"This step failed (exit code {done.returncode}); what it printed above "
                                       "says why. Fix that and run this again: finished steps are kept.")
        if not args.dry_run:
            print(f"Done. Start StoryStudio with: {venv_script(venv, machine.system, 'storystudio')}")
    except InstallError as exc:
        print(f"install.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("install.py: stopped.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
