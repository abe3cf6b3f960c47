"""A real SLURM cluster (one node on 127.0.0.1) runs a tiny pipeline through profiles/slurm.

Runs when CI=true or MLA_TEST_SLURM=1, as root; skipped otherwise, and under CI a reason not
to run is a failure. It installs Slurm and munge with apt if they are missing, writes
/etc/slurm/slurm.conf and gres.conf (marked; it refuses to replace files it did not write and
removes its own), and runs munged, slurmctld and slurmd in the foreground with their state in
a temporary directory, stopping them by PID at the end, also on failure.

What is checked, in a temporary clone of the working tree:
- the shipped profile plus tests/slurm_profile (squeue status checks; no key of the shipped
  profile repeated) builds one training run of the tiny grid: the data rules on this host
  (localrules), the training job on the cluster; its logged sbatch call carries the shipped
  profile's GPU partition and `--gpus=1`, and SLURM allocated the job one GPU;
- its metrics.json equals, byte for byte, a local run of the same config;
- a dry run of the whole tiny grid: Snakemake resolves gpu=1 for every job of the three
  training rules (train, train_missing, train_ablation) and for no other job, so the analysis
  asks for no GPU. Only a `train` job is really submitted.
The node's two GPUs are stand-ins (gres.conf points them at /dev/null and /dev/zero) and the
config trains on the CPU: the GPU request and its allocation are checked, not CUDA in a job.
"""
from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from clone import project_fixture, shrink

ROOT = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI") == "true"
MARK = "# Written by mla's tests/test_slurm.py, which removes it when done."
CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
TARGET = "results/builtin/train/builtin_it/concat/.complete"  # one training job (its marker), on SLURM and locally
TRAIN_RULES = {"train", "train_missing", "train_ablation"}
TINY = {
    "seeds": [0],
    "datasets": ["builtin_it"],
    "methods": ["concat", "mla"],
    "missing": {"datasets": ["builtin_it"], "methods": ["mla"], "rates": [0.5], "masking": "released"},
    "ablation": {"datasets": ["builtin_it"], "variants": {"nohgm": {"hgm": False}}},
    "analysis": {"datasets": ["builtin_it"], "methods": ["concat", "mla"], "seed": 0, "tsne_points": 20},
}
SLURM_CONF = """{mark}
ClusterName=mlatest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={base}/munge/munge.socket
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} Gres=gpu:2 State=UNKNOWN
{partitions}
"""
GRES_CONF = """{mark}
# Two stand-in GPUs: Slurm counts and allocates them; no device lies behind them.
Name=gpu File=/dev/null
Name=gpu File=/dev/zero
"""

pytestmark = pytest.mark.skipif(not (CI or os.environ.get("MLA_TEST_SLURM") == "1"),
                                reason="starts a real SLURM cluster as root: set MLA_TEST_SLURM=1")


def cannot_run(reason: str) -> None:
    """Skip, except under CI, where a test that cannot run fails."""
    if CI:
        pytest.fail(reason)
    pytest.skip(reason)


def sh(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def install_slurm() -> None:
    """apt-get install Slurm and munge unless present (apt-get update only if needed)."""
    if all(shutil.which(c, path=SBIN_PATH) for c in ("munged", "slurmctld", "slurmd", "sbatch", "srun")):
        return
    if not shutil.which("apt-get"):
        cannot_run("Slurm is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "slurmctld", "slurmd", "slurm-client", "munge"]
    if sh(*install, env=env).returncode != 0:
        sh("apt-get", "update", env=env)
        out = sh(*install, env=env)
        if out.returncode != 0:
            cannot_run(f"apt-get could not install Slurm:\n{out.stderr[-2000:]}")


def start(cmd: list, log: Path, **kw) -> subprocess.Popen:
    """A daemon in the foreground (its PID is ours to stop), stderr to a log file."""
    with open(log, "w") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, **kw)


def shipped_profile(root: Path) -> dict:
    return yaml.safe_load((root / "profiles/slurm/config.yaml").read_text())


def partitions(profile: dict) -> list[str]:
    """The partitions the shipped profile names: the default one first, then those of single rules."""
    names = [profile["default-resources"]["slurm_partition"]]
    names += [r["slurm_partition"] for r in profile.get("set-resources", {}).values() if "slurm_partition" in r]
    return list(dict.fromkeys(names))


def partition_lines(profile: dict) -> str:
    """One partition of the single node per name in the profile, the default one marked."""
    return "\n".join(f"PartitionName={name} Nodes=localhost Default={'YES' if i == 0 else 'NO'} MaxTime=INFINITE "
                     f"State=UP" for i, name in enumerate(partitions(profile)))


def job_env() -> dict:
    """The submitting environment; SLURM jobs inherit it (sbatch --export=ALL), so the rules'
    `python -m mla` finds the project's Python first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{SBIN_PATH}"
    return env


@pytest.fixture(scope="module")
def slurm_installed() -> None:
    if os.geteuid() != 0:
        cannot_run("the SLURM test needs root (apt, /etc/slurm, daemons)")
    install_slurm()


@pytest.fixture(scope="module")
def cluster(request, slurm_installed) -> None:
    """munged, slurmctld and slurmd on 127.0.0.1, state in a temporary directory."""
    for path in (CONF, GRES):
        if path.exists() and MARK not in path.read_text():
            pytest.fail(f"{path} exists and was not written by this test: refusing to replace it")
    base = Path(tempfile.mkdtemp(prefix="mla-slurm-"))
    base.chmod(0o755)  # munged runs as the munge user
    procs: list[subprocess.Popen] = []

    def logs() -> str:
        return "".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted(base.glob("**/*.log")))

    def stop() -> None:
        if len(procs) >= 2:  # cancel what is left of our jobs before the daemons go
            ids = sh("squeue", "-h", "-o", "%i", env=job_env()).stdout.split()
            if ids:
                sh("scancel", *ids, env=job_env())
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for path in (CONF, GRES):
            if path.exists() and MARK in path.read_text():
                path.unlink()
        shutil.rmtree(base, ignore_errors=True)

    request.addfinalizer(stop)
    (base / "munge").mkdir(mode=0o755)  # munged wants it traversable by all
    shutil.chown(base / "munge", "munge", "munge")
    for d in ("state", "spool"):
        (base / d).mkdir()
    mem_mb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1]) // 1024 * 9 // 10
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(SLURM_CONF.format(mark=MARK, base=base, cpus=os.cpu_count(), mem_mb=mem_mb,
                                      partitions=partition_lines(shipped_profile(ROOT))))
    GRES.write_text(GRES_CONF.format(mark=MARK))

    socket = base / "munge/munge.socket"
    munged = [shutil.which("munged", path=SBIN_PATH), "-F", f"--socket={socket}",
              *(f"--{k}-file={base}/munge/munged.{k}" for k in ("pid", "seed", "log"))]
    procs.append(start(munged, base / "munge/stderr.log", user="munge", group="munge"))
    for _ in range(100):
        if socket.exists() or procs[0].poll() is not None:
            break
        time.sleep(0.1)
    for daemon, args in (("slurmctld", ["-D"]), ("slurmd", ["-D", "-N", "localhost"])):
        procs.append(start([shutil.which(daemon, path=SBIN_PATH), *args], base / f"{daemon}.stderr.log"))
    deadline = time.monotonic() + 60
    while sh("sinfo", "-h", "-o", "%T", env=job_env()).stdout.strip() != "idle":
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            pytest.fail(f"the single-node SLURM cluster did not come up:\n{logs()}")
        time.sleep(0.5)


def tiny(cfg: dict) -> None:
    shrink(cfg, TINY, "builtin_it", n_train=64, n_test=32, epochs=1)


project = project_fixture("slurm", tiny)  # a git clone of the working tree with the tiny config


def snakemake(*args, cwd: Path) -> subprocess.CompletedProcess:
    out = sh(sys.executable, "-m", "snakemake", *args, cwd=cwd, env=job_env(), timeout=900)
    if out.returncode != 0:
        logs = "".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted(cwd.glob("logs/**/*.log")))
        slurm = "".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted(cwd.glob(".snakemake/slurm_logs/**/*.log")))
        raise AssertionError(f"snakemake {' '.join(map(str, args))} failed:\n{out.stderr[-4000:]}\n{logs}\n{slurm}")
    return out


def profiles(root: Path) -> list[str]:
    """The shipped profile, then the test's additions (a workflow profile takes precedence)."""
    return ["--profile", str(root / "profiles/slurm"), "--workflow-profile", str(root / "tests/slurm_profile")]


def metrics(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("results/**/metrics.json"))}


def rule_of(comment: str) -> str:
    """The rule name in the plugin's job comment `rule_<rule>[_wildcards_<...>]`."""
    return re.fullmatch(r"rule_(\w+?)(?:_wildcards_\S*)?", comment)[1]


@pytest.fixture(scope="module")
def on_slurm(cluster, project: Path) -> dict:
    """TARGET through the shipped profile: the data rules run on this host, the training
    job on the cluster. Returns the Snakemake log (with --verbose it holds the plugin's debug
    lines), the metrics and the cluster's jobs (`scontrol show job`)."""
    run = snakemake(TARGET, *profiles(project), "--verbose", cwd=project)
    log = Path(re.search(r"Complete log\(s\): (\S+)", run.stderr)[1]).read_text()
    jobs = sh("scontrol", "-o", "show", "job", env=job_env()).stdout.splitlines()
    return {"log": log, "metrics": metrics(project), "jobs": jobs}


def test_test_profile_only_adds_settings(project: Path):
    added = yaml.safe_load((project / "tests/slurm_profile/config.yaml").read_text())
    assert not set(added) & set(shipped_profile(project))


def test_shipped_profile_gives_each_training_job_one_gpu(slurm_installed, project: Path):
    """Resources as Snakemake resolves them for the whole tiny grid (a dry run): gpu=1 and the GPU
    partition on every job of the three training rules, no GPU and the default partition on the others."""
    dry = snakemake("all", "--dry-run", *profiles(project), cwd=project).stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", dry, flags=re.M)
    assert {rule for rule, _ in jobs} >= TRAIN_RULES | {"analyze"}, dry[-3000:]
    profile = shipped_profile(project)
    for rule, resources in jobs:
        given = resources.split(", ")
        assert ("gpu=1" in given) == (rule in TRAIN_RULES), (rule, resources)
        partition = profile["set-resources"].get(rule, profile["default-resources"])["slurm_partition"]
        assert f"slurm_partition={partition}" in given, (rule, resources)


def test_training_job_asks_for_and_gets_one_gpu(on_slurm: dict, project: Path):
    """The plugin's logged sbatch call (debug line `sbatch call: ...`) and what SLURM allocated."""
    calls = re.findall(r"sbatch call: (sbatch .*)", on_slurm["log"])
    submitted = [(rule_of(re.search(r"--comment '?([^' ]+)", c)[1]), c) for c in calls]
    assert [r for r, _ in submitted] == ["train"], calls  # data rules stay local
    profile = shipped_profile(project)
    partition = profile["set-resources"]["train"]["slurm_partition"]  # the GPU partition, not the default
    assert partition != profile["default-resources"]["slurm_partition"]
    for _, call in submitted:
        assert f"-p {partition}" in call or f"-p '{partition}'" in call, call
        assert "--gpus=1" in call and "--gres" not in call, call
    allocated = [(rule_of(re.search(r"Comment=(\S+)", j)[1]), re.findall(r"TresPerJob=(\S+)", j))
                 for j in on_slurm["jobs"]]
    assert allocated == [("train", ["gres:gpu:1"])], on_slurm["jobs"]
    assert all("JobState=COMPLETED" in j for j in on_slurm["jobs"])


def test_slurm_run_equals_local_run(on_slurm: dict, project: Path):
    """The same config run locally in the same clone writes the same metrics.json bytes."""
    assert len(on_slurm["metrics"]) == 1, on_slurm["metrics"].keys()
    shutil.rmtree(project / "results/builtin")  # results/README.md is tracked: keep the clone clean
    snakemake(TARGET, "--cores", "2", "--workflow-profile", "none", cwd=project)
    local = metrics(project)
    assert local.keys() == on_slurm["metrics"].keys()
    for name, data in local.items():
        slurm = on_slurm["metrics"][name]
        diff = difflib.unified_diff(slurm.decode().splitlines(), data.decode().splitlines(), "slurm", "local")
        assert data == slurm, f"{name}:\n" + "\n".join(diff)
