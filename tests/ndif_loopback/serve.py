"""A real ndif 0.1.2 server on loopback, for the live suite: `python tests/ndif_loopback/serve.py up|down|status|build`.

`build` makes the server's own environment (Python 3.12, the pinned `server_env/requirements.txt`), once:
it is cached outside the repository under `~/.cache/nnsight-codi/ndif-server-<hash of the pins>` (or
`$NNSIGHT_CODI_NDIF_ENV_ROOT`), so CI on the same machine reuses it and a fresh machine builds it.
`up` builds if needed and starts, all bound to 127.0.0.1: Redis (Debian `redis-server`), an S3 store
(moto's server), Ray (a fake GPU in its resources: the CPU-serving test fixture
`server_env/sitecustomize.py`), ndif's controller and API; then deploys the shipped tiny CODI and
tiny instruct models and a GPT-2-shaped LoRA base from local directories (float32, like local runs).
`down` stops every process it started, by the PIDs it recorded (and any process carrying its run's
marker in its environment: Ray's daemons and workers). Every wait is bounded.

State and logs: `$NNSIGHT_CODI_NDIF_RUN_DIR` (default `~/.cache/nnsight-codi/ndif-loopback-run`),
`state.json` there names the API URL, the deployed model ids and the LoRA checkpoint.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "server_env" / "requirements.txt"
SITECUSTOMIZE = HERE / "server_env" / "sitecustomize.py"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nnsight-codi"
RUN_DIR = Path(os.environ.get("NNSIGHT_CODI_NDIF_RUN_DIR", CACHE / "ndif-loopback-run"))
RAY_TMP = Path(tempfile.gettempdir()) / f"ncodi-ray-{os.getuid()}"  # short: Ray's socket paths must fit 107 bytes
HOST = "127.0.0.1"
PORTS = {"api": 18001, "redis": 16379, "s3": 19000, "ray": 26385, "ray_client": 26001, "dashboard": 28265,
         "dashboard_agent": 28266, "object_manager": 28076, "metrics": 28080, "node_manager": 28077}
FAKE_GPU_BYTES = 64 * 2**30  # matches server_env/sitecustomize.py
RAY_LOGICAL_CPUS = 8  # controller 1 + one per model actor (+ spare); not the machine's cores
API_KEY = "loopback"


def log(msg: str) -> None:
    print(f"[ndif-loopback] {msg}", file=sys.stderr, flush=True)


# -- the server's environment -----------------------------------------------------------------------

def python312() -> str:
    """A working Python 3.12 interpreter: $NNSIGHT_CODI_PY312, pyenv's 3.12.x, or `python3.12` on PATH
    (a pyenv shim on PATH may exist without a 3.12 selected: each candidate is run once to check)."""
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [os.environ.get("NNSIGHT_CODI_PY312"), *sorted(glob.glob(f"{root}/versions/3.12.*/bin/python3.12"),
                                                                 reverse=True), shutil.which("python3.12")]
    for candidate in candidates:
        if not candidate:
            continue
        try:
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 12)":
            return candidate
    raise SystemExit("ndif-loopback: no working Python 3.12 found (ndif 0.1.2 needs >= 3.12): set NNSIGHT_CODI_PY312")


def env_dir() -> Path:
    """The cached server environment for the pinned requirements (and the interpreter's minor)."""
    root = Path(os.environ.get("NNSIGHT_CODI_NDIF_ENV_ROOT", CACHE))
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + b"py3.12").hexdigest()[:12]
    return root / f"ndif-server-{key}"


def build() -> Path:
    """Build the server environment once (atomic: a half-built one is never used)."""
    target = env_dir()
    if (target / ".complete").exists():
        return target
    tmp = target.with_name(target.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.time()
    log(f"building the server environment {target} (Python 3.12; a CUDA torch build from PyPI, ~5 GB)")
    subprocess.run([python312(), "-m", "venv", str(tmp)], check=True, timeout=300)
    subprocess.run([str(tmp / "bin" / "pip"), "install", "-q", "-r", str(REQUIREMENTS)], check=True, timeout=3600)
    # venvs are not relocatable: rebuild the scripts' shebangs by renaming before first use
    for script in (tmp / "bin").iterdir():
        try:
            text = script.read_bytes()
        except (IsADirectoryError, PermissionError):
            continue
        if text.startswith(b"#!") and str(tmp).encode() in text.split(b"\n", 1)[0]:
            script.write_bytes(text.replace(str(tmp).encode(), str(target).encode(), 1))
    cfg = tmp / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace(str(tmp), str(target)))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    (target / ".complete").write_text(f"{time.time() - start:.0f} s\n")
    log(f"built in {time.time() - start:.0f} s")
    return target


def site_packages(env: Path) -> Path:
    return next((env / "lib").glob("python3.*/site-packages"))


# -- processes ----------------------------------------------------------------------------------------

def _server_env(env: Path, token: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "RAY_"))}
    e.update({
        "PATH": f"{env / 'bin'}:{e.get('PATH', '')}", "VIRTUAL_ENV": str(env),
        "NNSIGHT_CODI_NDIF_CPU_PATCHES": "1", "NNSIGHT_CODI_NDIF_RUN": token,
        "NDIF_REDIS_URL": f"redis://{HOST}:{PORTS['redis']}",
        "NDIF_OBJECT_STORE_URL": f"http://{HOST}:{PORTS['s3']}", "NDIF_OBJECT_STORE_ACCESS_KEY": API_KEY,
        "NDIF_OBJECT_STORE_SECRET_KEY": API_KEY, "NDIF_OBJECT_STORE_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": API_KEY, "AWS_SECRET_ACCESS_KEY": API_KEY, "AWS_DEFAULT_REGION": "us-east-1",
        "NDIF_API_URL": f"http://{HOST}:{PORTS['api']}", "NDIF_API_PORT": str(PORTS["api"]),
        "NDIF_RAY_ADDRESS": f"ray://{HOST}:{PORTS['ray_client']}", "NDIF_RAY_HEAD_PORT": str(PORTS["ray"]),
        "NDIF_DEFAULT_DTYPE": "float32", "NDIF_HOME": str(RUN_DIR / "ndif-home"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "GRPC_ENABLE_FORK_SUPPORT": "0", "RAY_USAGE_STATS_ENABLED": "0",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    })
    return e


def _spawn(name: str, argv: list[str], env: dict[str, str], state: dict) -> subprocess.Popen:
    logf = open(RUN_DIR / f"{name}.log", "ab")
    proc = subprocess.Popen(argv, env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=RUN_DIR)
    state["pids"][name] = proc.pid
    _save(state)
    log(f"started {name} (pid {proc.pid})")
    return proc


def _wait_port(port: int, name: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((HOST, port)) == 0:
                return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}): see {RUN_DIR / (name + '.log')}")
        time.sleep(0.5)
    raise TimeoutError(f"{name} did not open {HOST}:{port} within {timeout:.0f} s: see {RUN_DIR}")


def _http(path: str, timeout: float = 10) -> bytes:
    req = urllib.request.Request(f"http://{HOST}:{PORTS['api']}{path}", headers={"ndif-api-key": API_KEY})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def _save(state: dict) -> None:
    (RUN_DIR / "state.json").write_text(json.dumps(state, indent=1))


def load_state() -> dict | None:
    path = RUN_DIR / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def models() -> dict[str, str]:
    """The model ids the live suite uses: local directories the server loads as they are."""
    return {"tiny-codi": str(REPO / "nnsight_codi" / "assets" / "tiny-codi"),
            "tiny-instruct": str(REPO / "nnsight_codi" / "assets" / "tiny-instruct"),
            "tiny-coconut": str(REPO / "nnsight_codi" / "assets" / "tiny-coconut"),
            "lora-base": str(RUN_DIR / "lora" / "hosted-base")}


def _make_lora_checkpoint() -> dict:
    """The GPT-2-shaped base + reference LoRA checkpoint of the test factories (seeded: same every time), and
    the base LM as the project's loader builds it from them, saved as a model directory for the server."""
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO))
    from factories import make_reference_checkpoint

    from nnsight_codi.loading import load_model

    ref = make_reference_checkpoint(RUN_DIR / "lora", "gpt2")
    inter = load_model(str(ref["path"]), base=str(ref["base_dir"]), dtype="float32", lora_mode="interventions")
    hosted = RUN_DIR / "lora" / "hosted-base"
    inter._module.save_pretrained(hosted)
    inter.tokenizer.save_pretrained(hosted)
    return {"path": str(ref["path"]), "base_dir": str(ref["base_dir"]), "hosted_base": str(hosted)}


def _deploy(env: Path, environ: dict[str, str], ids: list[str], timeout: float) -> None:
    script = ("import json, sys\nfrom ndif.cli.lib.deploy import deploy\n"
              "specs = [{'checkpoint': m, 'dtype': 'float32', 'task': 'text-generation'} for m in json.loads(sys.argv[1])]\n"
              "print(deploy(specs, on_message=lambda m: print(m, flush=True)))\n")
    with open(RUN_DIR / "deploy.log", "ab") as logf:
        subprocess.run([str(env / "bin" / "python"), "-c", script, json.dumps(ids)], env=environ, check=True,
                       timeout=timeout, stdout=logf, stderr=subprocess.STDOUT, cwd=RUN_DIR)


def up(deploy_timeout: float = 900) -> dict:
    """Start everything (no-op if already up) and return the state."""
    state = load_state()
    if state and state.get("ready") and _alive(state):
        return state
    if state:
        down()
    if not shutil.which("redis-server"):
        raise SystemExit("ndif-loopback: redis-server is not installed (Debian: apt-get install redis-server)")
    env = build()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy2(SITECUSTOMIZE, site_packages(env) / "sitecustomize.py")  # the CPU-serving test fixture
    token = f"ndif-loopback-{os.getpid()}-{int(time.time())}"
    state = {"token": token, "pids": {}, "env": str(env), "api": f"http://{HOST}:{PORTS['api']}",
             "api_key": API_KEY, "models": models(), "ready": False, "started": time.time()}
    _save(state)
    environ = _server_env(env, token)
    timings: dict[str, float] = {}
    t0 = time.time()
    try:
        redis = _spawn("redis", ["redis-server", "--port", str(PORTS["redis"]), "--bind", HOST, "--save", "",
                                 "--appendonly", "no", "--dir", str(RUN_DIR)], environ, state)
        _wait_port(PORTS["redis"], "redis", 30, redis)
        s3 = _spawn("s3", [str(env / "bin" / "moto_server"), "-H", HOST, "-p", str(PORTS["s3"])], environ, state)
        _wait_port(PORTS["s3"], "s3", 60, s3)
        resources = json.dumps({"head": 10, "cuda_memory_bytes": FAKE_GPU_BYTES, "cpu_memory_bytes": 8 * 2**30})
        ray = _spawn("ray", [str(env / "bin" / "ray"), "start", "--head", "--block", f"--node-ip-address={HOST}",
                             f"--port={PORTS['ray']}", f"--ray-client-server-port={PORTS['ray_client']}",
                             f"--dashboard-host={HOST}", f"--dashboard-port={PORTS['dashboard']}",
                             f"--dashboard-agent-listen-port={PORTS['dashboard_agent']}",
                             f"--object-manager-port={PORTS['object_manager']}",
                             f"--node-manager-port={PORTS['node_manager']}",
                             f"--metrics-export-port={PORTS['metrics']}",
                             "--min-worker-port=27000", "--max-worker-port=27999",
                             f"--num-cpus={RAY_LOGICAL_CPUS}", "--num-gpus=1", f"--resources={resources}",
                             "--object-store-memory=500000000", f"--temp-dir={RAY_TMP}",
                             "--disable-usage-stats"], environ, state)
        _wait_port(PORTS["ray_client"], "ray", 180, ray)
        timings["ray"] = time.time() - t0
        controller_env = dict(environ, RAY_ADDRESS=f"{HOST}:{PORTS['ray']}")
        _spawn("controller", [str(env / "bin" / "python"), "-m", "ndif.services.ray.deployments.controller.controller"],
               controller_env, state)
        api = _spawn("api", [str(env / "bin" / "gunicorn"), "--config", "python:ndif.services.api.gunicorn_conf",
                             "--bind", f"{HOST}:{PORTS['api']}", "ndif.services.api.app:app"], environ, state)
        _wait_port(PORTS["api"], "api", 120, api)
        deadline = time.time() + 180
        while True:  # the API answers /env once it reaches Ray and the controller
            try:
                state["server_env"] = json.loads(_http("/env", timeout=30))
                break
            except Exception as err:  # not ready yet
                if time.time() > deadline:
                    raise TimeoutError(f"the NDIF API did not answer /env within 180 s ({err}): see {RUN_DIR}") from err
                time.sleep(2)
        timings["api"] = time.time() - t0
        state["lora"] = _make_lora_checkpoint()
        _deploy(env, environ, list(state["models"].values()), deploy_timeout)
        timings["deployed"] = time.time() - t0
    except BaseException:
        log(f"start failed: stopping what was started (logs in {RUN_DIR})")
        down()
        raise
    state["timings"] = {k: round(v, 1) for k, v in timings.items()}
    state["ready"] = True
    _save(state)
    log(f"up in {time.time() - t0:.0f} s: {state['api']}")
    return state


# -- stopping -----------------------------------------------------------------------------------------

def _marked(token: str) -> list[int]:
    """PIDs of processes whose environment carries this run's marker (Ray's daemons and workers)."""
    pids = []
    needle = f"NNSIGHT_CODI_NDIF_RUN={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _alive(state: dict) -> bool:
    for pid in state.get("pids", {}).values():
        try:
            os.kill(pid, 0)
        except OSError:
            return False
    return True


def down(timeout: float = 30) -> None:
    """Stop every process this run started: its recorded PIDs' process groups, then marked leftovers."""
    state = load_state()
    if not state:
        log("nothing to stop")
        return
    pids = list(state.get("pids", {}).values())
    for pid in reversed(pids):
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + timeout
    while time.time() < deadline and (_marked(state["token"]) or any(_exists(p) for p in pids)):
        time.sleep(0.5)
    for pid in [*pids, *_marked(state["token"])]:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
    left = _marked(state["token"])
    (RUN_DIR / "state.json").unlink(missing_ok=True)
    log("stopped" + (f"; still running: {left}" if left else ""))


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def status() -> int:
    state = load_state()
    if not state:
        print("down")
        return 1
    alive = {name: _exists(pid) for name, pid in state["pids"].items()}
    print(json.dumps({"api": state["api"], "ready": state.get("ready"), "alive": alive,
                      "marked": len(_marked(state["token"])), "timings": state.get("timings")}, indent=1))
    return 0 if state.get("ready") and all(alive.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("action", choices=["up", "down", "status", "build", "env-dir"])
    args = parser.parse_args(argv)
    if args.action == "up":
        state = up()
        print(json.dumps({k: state[k] for k in ("api", "models", "timings")}, indent=1))
    elif args.action == "down":
        down()
    elif args.action == "build":
        print(build())
    elif args.action == "env-dir":
        print(env_dir())
    else:
        return status()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
