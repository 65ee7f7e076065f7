"""packaging/install.py: the machine found -> the PyTorch build chosen -> the exact install commands.

The machines are made up here; nothing is installed and no index is asked.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("storystudio_install", ROOT / "packaging" / "install.py")
install = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = install
_spec.loader.exec_module(install)

Machine, NvidiaGpu = install.Machine, install.NvidiaGpu
INDEX = "https://download.pytorch.org/whl/"


def linux(**kw):
    return Machine("Linux", "x86_64", **kw)


def nvidia(driver, *ccs, system="Linux", arch="x86_64"):
    return Machine(system, arch, nvidia_driver=driver,
                   nvidia_gpus=tuple(NvidiaGpu(f"GPU sm{cc[0]}{cc[1]}", cc) for cc in ccs))


@pytest.mark.parametrize("machine, backend, kind, index", [
    (linux(), "cpu", "cpu", INDEX + "cpu"),                                            # this very machine
    (Machine("Windows", "x86_64"), "cpu", "cpu", INDEX + "cpu"),
    (Machine("Darwin", "arm64"), "mps", "mps", None),                                 # PyPI's wheels have MPS
    (nvidia((580, 95, 5), (8, 9)), "cu130", "cuda", INDEX + "cu130"),                 # RTX 40xx, new driver
    (nvidia((570, 124, 6), (8, 6)), "cu128", "cuda", INDEX + "cu128"),
    (nvidia((565, 57, 1), (8, 6)), "cu126", "cuda", INDEX + "cu126"),
    (nvidia((535, 183, 1), (8, 0)), "cu126", "cuda", INDEX + "cu126"),                # minor version compat
    (nvidia((580, 95, 5), (6, 1)), "cu126", "cuda", INDEX + "cu126"),                 # Pascal: only cu126 has it
    (nvidia((580, 95, 5), (7, 0)), "cu128", "cuda", INDEX + "cu128"),                 # Volta: not in CUDA 13
    (nvidia((575, 51, 3), (12, 0)), "cu128", "cuda", INDEX + "cu128"),                # Blackwell: needs 12.8+
    (nvidia((581, 57), (8, 9), system="Windows"), "cu130", "cuda", INDEX + "cu130"),
    (nvidia((566, 36), (8, 6), system="Windows"), "cu126", "cuda", INDEX + "cu126"),
    (nvidia((580, 95, 5), (9, 0), arch="arm64"), "cu130", "cuda", INDEX + "cu130"),   # Grace Hopper
    (linux(amd_gpus=("gfx1100",)), "rocm6.4", "rocm", INDEX + "rocm6.4"),             # Radeon RX 7900
    (linux(amd_gpus=("gfx90a", "gfx90a")), "rocm6.4", "rocm", INDEX + "rocm6.4"),
])
def test_auto_choice(machine, backend, kind, index):
    choice = install.choose(machine)
    assert (choice.backend, choice.kind, choice.index_url) == (backend, kind, index)
    assert choice.reason.endswith(".")


@pytest.mark.parametrize("machine, why", [
    (nvidia((470, 256, 2), (7, 5)), "too old"),                     # driver before CUDA 12
    (nvidia((575, 51, 3), (12, 0)), None),                          # (not a fallback: cu128 works)
    (linux(amd_gpus=("gfx1035",)), "do not support AMD GPU gfx1035"),   # a laptop APU ROCm does not build for
    (Machine("Windows", "x86_64", amd_gpus=("gfx1100",)), "do not support"),
    (nvidia((580, 95, 5), (3, 7)), "do not support GPU sm37"),      # Kepler
])
def test_auto_falls_back_to_cpu_with_the_reason(machine, why):
    choice = install.choose(machine)
    if why is None:
        assert choice.kind == "cuda"
        return
    assert choice.backend == "cpu" and choice.index_url == INDEX + "cpu"
    assert any(why in text for text in (choice.reason, *choice.notes)), choice


@pytest.mark.parametrize("wanted, backend, index", [
    ("cpu", "cpu", INDEX + "cpu"),
    ("CUDA", "cu130", INDEX + "cu130"),
    ("cu128", "cu128", INDEX + "cu128"),
    ("cu129", "cu129", INDEX + "cu129"),      # not in the table: used as given, with a note
    ("rocm", "rocm6.4", INDEX + "rocm6.4"),
    ("rocm7.0", "rocm7.0", INDEX + "rocm7.0"),
    ("xpu", "xpu", INDEX + "xpu"),
])
def test_asked_for_builds(wanted, backend, index):
    choice = install.choose(nvidia((580, 95, 5), (8, 9)), wanted)
    assert (choice.backend, choice.index_url) == (backend, index)


def test_cuda_asked_for_without_a_driver_takes_the_most_compatible_build():
    choice = install.choose(linux(), "cuda")
    assert choice.backend == "cu126" and "no NVIDIA driver" in choice.reason


@pytest.mark.parametrize("machine, wanted, message", [
    (Machine("Darwin", "x86_64"), "auto", "Intel Macs"),
    (Machine("Darwin", "arm64"), "cu128", "do not exist for macOS"),
    (linux(), "mps", "Apple silicon"),
    (Machine("Windows", "x86_64"), "rocm", "Linux on x86-64 only"),
    (linux(), "gpu", "is not a PyTorch build"),
    (nvidia((470, 256, 2), (7, 5)), "cuda", "too old"),
])
def test_impossible_choices_are_plain_errors(machine, wanted, message):
    with pytest.raises(install.InstallError, match=message):
        install.choose(machine, wanted)


def test_finding_nvidia_gpus_with_nvidia_smi():
    def run(argv, **kw):
        assert argv[0] == "/usr/bin/nvidia-smi" and "compute_cap" in argv[1]
        return subprocess.CompletedProcess(argv, 0, "NVIDIA GeForce RTX 4090, 570.124.06, 8.9\n"
                                                    "NVIDIA GeForce RTX 3060, 570.124.06, 8.6\n", "")

    driver, gpus = install.find_nvidia(run, which=lambda tool: "/usr/bin/nvidia-smi")
    assert driver == (570, 124, 6)
    assert gpus == (NvidiaGpu("NVIDIA GeForce RTX 4090", (8, 9)), NvidiaGpu("NVIDIA GeForce RTX 3060", (8, 6)))


def test_old_nvidia_smi_without_compute_cap_and_a_broken_one():
    def old(argv, **kw):
        if "compute_cap" in argv[1]:
            return subprocess.CompletedProcess(argv, 2, "", "Field compute_cap is not a valid field")
        return subprocess.CompletedProcess(argv, 0, "Tesla K80, 470.256.02\n", "")

    assert install.find_nvidia(old, which=lambda t: t) == ((470, 256, 2), (NvidiaGpu("Tesla K80", None),))

    def broken(argv, **kw):  # installed but no driver loaded
        raise OSError("NVIDIA-SMI has failed")

    assert install.find_nvidia(broken, which=lambda t: t) == (None, ())
    assert install.find_nvidia(broken, which=lambda t: None) == (None, ())


def test_finding_amd_gpus_in_the_kfd_topology(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kfd").write_text("")
    nodes = tmp_path / "sys/class/kfd/kfd/topology/nodes"
    for n, version in enumerate((0, 110000, 90010, 100300)):  # the CPU node, RX 7900, MI210, RX 6800
        (nodes / str(n)).mkdir(parents=True)
        (nodes / str(n) / "properties").write_text(f"cpu_cores_count 0\ngfx_target_version {version}\n")
    assert install.find_amd(tmp_path) == ("gfx1100", "gfx90a", "gfx1030")
    (tmp_path / "dev/kfd").unlink()  # no compute driver: the GPUs cannot be used
    assert install.find_amd(tmp_path) == ()


def test_this_machine_is_detected_without_error():
    machine = install.detect_machine()
    assert machine.system in ("Linux", "Windows", "Darwin") and machine.arch
    assert install.choose(machine).kind in install.KINDS


def test_torch_requirement_is_pyprojects():
    assert install.torch_requirement() == "torch>=2.3,<3"


def test_pip_plan_installs_torch_first_from_its_index(tmp_path):
    venv = tmp_path / "venv"
    steps = install.plan(install.choose(linux()), linux(), venv=venv, python="/usr/bin/python3", project="/src/ss")
    py = str(venv / "bin" / "python")
    assert [s.argv for s in steps] == [
        ("/usr/bin/python3", "-m", "venv", str(venv)),
        (py, "-m", "pip", "install", "torch>=2.3,<3", "--index-url", INDEX + "cpu"),
        (py, "-m", "pip", "install", "-e", "/src/ss"),
        (str(venv / "bin" / "storystudio"), "install-desktop"),
    ]
    assert install.shown(steps[1].argv, "Linux").endswith("install 'torch>=2.3,<3' --index-url " + INDEX + "cpu")


def test_uv_plan_passes_the_choice_as_torch_backend(tmp_path, monkeypatch):
    monkeypatch.setattr(install.shutil, "which", lambda tool: None)
    machine = nvidia((570, 124, 6), (8, 9))
    steps = install.plan(install.choose(machine), machine, venv=tmp_path / "v", tool="uv", python="3.11",
                         project=".", extras="test", editable=False, venv_exists=True, desktop=False)
    py = str(tmp_path / "v" / "bin" / "python")
    assert [s.argv for s in steps] == [
        ("uv", "pip", "install", "--python", py, "torch>=2.3,<3", "--torch-backend", "cu128"),
        ("uv", "pip", "install", "--python", py, ".[test]"),
    ]


def test_plans_for_macos_and_windows(tmp_path):
    mac = Machine("Darwin", "arm64")
    steps = install.plan(install.choose(mac), mac, venv=tmp_path / "v", python="python3", project=".")
    assert steps[1].argv[-1] == "torch>=2.3,<3"  # PyPI, no index
    assert len(steps) == 3  # no desktop entry step: the app bundle is the Mac way
    win = nvidia((581, 57), (8, 9), system="Windows")
    steps = install.plan(install.choose(win), win, venv=Path("C:/ss/.venv"), python="py", project=".")
    assert steps[1].argv[0].endswith("Scripts/python.exe") and steps[1].argv[-1] == INDEX + "cu130"
    assert install.shown(steps[1].argv, "Windows").count('"torch>=2.3,<3"') == 1


def test_index_override_for_a_mirror_or_the_ordinary_index(tmp_path):
    choice = install.choose(linux())
    pypi = install.plan(choice, linux(), venv=tmp_path, torch_spec="torch==2.13.0", torch_index="pypi",
                        venv_exists=True, desktop=False)
    assert pypi[0].argv[-1] == "torch==2.13.0"
    mirror = install.plan(choice, linux(), venv=tmp_path, torch_index="https://mirror.example/torch-cpu",
                          venv_exists=True, desktop=False, tool="uv")
    assert mirror[0].argv[-2:] == ("--index-url", "https://mirror.example/torch-cpu")


def test_asking_offers_the_machines_builds_and_defaults_to_the_one_found():
    machine = nvidia((580, 95, 5), (8, 9))
    found = install.choose(machine)
    prompts = []
    write = lambda text, end="\n": prompts.append(text)  # noqa: E731
    assert install.ask(machine, found, read=lambda: "", write=write) is found
    assert "[cu130]" in prompts[0] and "cpu" in prompts[0] and "rocm6.4" in prompts[0]
    assert install.ask(machine, found, read=lambda: "cpu", write=write).backend == "cpu"
    with pytest.raises(install.InstallError):
        install.ask(machine, found, read=lambda: "nonsense", write=write)


def test_dry_run_prints_the_choice_and_commands_and_changes_nothing(tmp_path):
    venv = tmp_path / "venv"
    out = subprocess.run([sys.executable, str(ROOT / "packaging" / "install.py"), "--dry-run", "--tool", "pip",
                          "--venv", str(venv)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("This computer: ") and "PyTorch build: " in out.stdout
    assert "-m pip install -e " in out.stdout and not venv.exists()


def test_bad_choice_on_the_command_line_is_one_sentence():
    out = subprocess.run([sys.executable, str(ROOT / "packaging" / "install.py"), "--dry-run", "--torch", "gpu"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("install.py: ") and "Traceback" not in out.stderr


def test_another_torch_build_in_the_environment_is_replaced(tmp_path):
    venv = tmp_path / "venv"
    (venv / "lib/python3.11/site-packages/torch-2.13.0.dist-info").mkdir(parents=True)  # PyPI's CUDA build
    assert install.installed_torch(venv) == "2.13.0"
    cpu = install.choose(linux())
    steps = install.plan(cpu, linux(), venv=venv, venv_exists=True, desktop=False,
                         torch_present=install.installed_torch(venv))
    assert steps[0].argv[-4:] == ("pip", "uninstall", "-y", "torch") and "2.13.0" in steps[0].what
    assert steps[1].argv[-2:] == ("--index-url", INDEX + "cpu")
    # the same build is kept; so is whatever a --torch-index override brought
    assert install.torch_fits("2.13.0+cpu", cpu) and not install.torch_fits("2.13.0+cu128", cpu)
    kept = install.plan(cpu, linux(), venv=venv, venv_exists=True, desktop=False, torch_present="2.13.0+cpu")
    assert "uninstall" not in kept[0].argv
    assert install.torch_fits("2.13.0", install.choose(Machine("Darwin", "arm64")))
    assert install.installed_torch(tmp_path / "none") is None
