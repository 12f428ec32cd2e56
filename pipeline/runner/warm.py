"""The warm launcher: a process that has already imported what jobs import (torch,
transformers, peft, trl: 6–9 s of every fresh job process on a laptop CPU) and forks each
job from there, so a queued job starts working in well under a second. The job itself is
unchanged: `python -m pipeline <args>` as the queue wrote it, in a session of its own (a
cancel still signals its whole process group), with the queue's environment, folder and log.

One launcher serves one interpreter, checkout, priority and configuration of the libraries
(the variables they read while importing must be the ones the job would have seen in a
fresh process): a request goes to the launcher whose key these hash to, and the first job
of a new key starts cold as before while its launcher starts. It is Linux and CPU only
(forking a process that has touched a GPU breaks the child's GPU), listens on a socket only
its own user can reach, reaps its children and writes each one's exit status into its run
folder (`exit.json`), and leaves after ten idle minutes.
`CSTUDIO_WARM_LAUNCHER=0` turns it off.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import runpy
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from setproctitle import setproctitle

from pipeline.core import cpu
from pipeline.core.files import write_atomic
from pipeline.core.job_folder import EXIT_FILE, JOB_ID_ENV

SWITCH_ENV = "CSTUDIO_WARM_LAUNCHER"
IDLE_SECONDS = 600.0
STARTING_SECONDS = 120.0  # a launcher that has not answered by then is started again
# What the preloaded libraries read while importing: the variables with these prefixes pick
# the launcher (every variable reaches the job itself, exactly as the queue set it).
IMPORT_TIME_ENV = (
    *("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "DATASETS_", "ACCELERATE_", "TRL_", "PEFT_"),
    *("TORCH", "PYTORCH_", "CUDA_", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "TOKENIZERS_"),
    *("PYTHON", "LD_", "HOME", "XDG_", "TMPDIR", "LANG", "LC_"),
)
SET_BY_TORCH = ("TORCHINDUCTOR_CACHE_DIR",)  # torch sets it to its default as it runs
PER_JOB_ENV = (JOB_ID_ENV, "PYTEST_CURRENT_TEST")
GPU_DEVICES = ("/dev/nvidia0", "/dev/kfd", "/dev/dxg")
# The libraries jobs spend their start-up importing (our own modules then take ~0.1 s).
PRELOAD = (
    "torch",
    "transformers:AutoModelForCausalLM,AutoTokenizer",
    "datasets",
    "accelerate",
    "peft",
    "trl:SFTTrainer,RewardTrainer,DPOTrainer,GRPOTrainer",
)


@dataclass(frozen=True)
class Request:
    """One job to fork: its command line (`python -m pipeline …`), environment, working
    folder, log file, and the file its exit status goes to."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: str
    exit_file: str


def enabled(command: list[str], env: dict[str, str]) -> bool:
    """Whether a job with this command and environment may start warm: a plain
    `python -m pipeline` job on this interpreter, on a Linux CPU machine, not switched off."""
    return (
        sys.platform == "linux"
        and env.get(SWITCH_ENV, "1") != "0"
        and command[:3] == [sys.executable, "-m", "pipeline"]
        and not any(os.path.exists(d) for d in GPU_DEVICES)
    )


def key(env: dict[str, str]) -> str:
    """The launcher that may serve a job of this environment: same interpreter, checkout,
    priority and the variables libraries read while importing (IMPORT_TIME_ENV)."""
    kept = sorted(
        (k, v) for k, v in env.items() if k.startswith(IMPORT_TIME_ENV) and k not in SET_BY_TORCH
    )
    parts = [sys.executable, str(Path(__file__).resolve()), os.getpriority(os.PRIO_PROCESS, 0)]
    return hashlib.sha256(json.dumps([parts, kept]).encode()).hexdigest()[:20]


def home() -> Path:
    """The folder of the launchers' sockets, this user's only (a socket path is limited to
    about 100 characters, so not the workspace)."""
    folder = Path(tempfile.gettempdir()) / f"cstudio-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise PermissionError(f"{folder} must belong to this user alone")
    return folder


def address(env: dict[str, str]) -> Path:
    """The socket of the launcher that serves `env`."""
    return home() / f"{key(env)}.sock"


def connected(env: dict[str, str]) -> socket.socket:
    """A connection to the launcher of `env` (OSError when none answers)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(10)
        conn.connect(str(address(env)))
    except OSError:
        conn.close()
        raise
    return conn


def launcher(env: dict[str, str]) -> int | None:
    """The pid of the launcher that serves `env`, None when none answers."""
    try:
        with connected(env) as conn:
            return peer(conn)[0]
    except OSError:
        return None


def warm_up(env: dict[str, str]) -> None:
    """Have the launcher of `env` ready before the first job (the studio's start calls
    this: its first job then starts warm too)."""
    if enabled([sys.executable, "-m", "pipeline"], env) and launcher(env) is None:
        spawn(env)


def start(request: Request) -> int | None:
    """Fork the job from the launcher of its environment; its pid, or None when it must
    start cold (no launcher answers: one is started for the next job)."""
    if not enabled(request.argv, request.env):
        return None
    try:
        with connected(request.env) as conn:
            conn.sendall(json.dumps(asdict(request)).encode() + b"\n")
            return int(json.loads(conn.makefile().readline())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        spawn(request.env)
        return None


def claimed(starting: Path) -> bool:
    """Whether this process may start the launcher that `starting` names: it created the
    file (one of two askers at the same instant does), or took over one left too long."""
    for _ in range(2):
        try:
            os.close(os.open(starting, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return True
        except FileExistsError:
            try:
                if time.time() - starting.stat().st_mtime < STARTING_SECONDS:
                    return False
                starting.unlink()  # its launcher never answered: start another
            except FileNotFoundError:
                pass
    return False


def spawn(env: dict[str, str]) -> None:
    """Start the launcher of `env` in the background unless one is starting already."""
    try:
        name = key(env)
        folder = home()
        if not claimed(folder / f"{name}.starting"):
            return
        with open(folder / f"{name}.log", "a") as log:
            subprocess.Popen(
                [sys.executable, "-m", "pipeline.runner.warm", str(folder / f"{name}.sock")],
                cwd=Path(__file__).resolve().parents[2],
                env={k: v for k, v in env.items() if k not in PER_JOB_ENV},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError:
        pass


def read_exit(out_dir: str | Path) -> int | None:
    """The exit status the launcher recorded for a job it forked (None: not recorded)."""
    try:
        return int(json.loads((Path(out_dir) / EXIT_FILE).read_text())["returncode"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --- the launcher process --------------------------------------------------------------------


def preload() -> None:
    """Import what jobs import, as a fresh job would (its torch threads set first)."""
    cpu.use_physical_cores()
    for entry in PRELOAD:
        module, _, names = entry.partition(":")
        try:
            loaded = importlib.import_module(module)
            for name in filter(None, names.split(",")):
                getattr(loaded, name)
        except Exception as exc:  # an optional extra not installed: its jobs import it later
            print(f"not preloaded: {entry} ({exc})", flush=True)


def peer(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connection."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    return pid, uid


def received(conn: socket.socket) -> Request | None:
    """The request on a connection from this user's process (the folder is private too);
    None for anything else, which the launcher ignores."""
    if peer(conn)[1] != os.getuid():
        return None
    try:
        conn.settimeout(10)
        request = Request(**json.loads(conn.makefile().readline()))
        valid = request.argv[:3] == [sys.executable, "-m", "pipeline"]
        return request if valid and all(isinstance(v, str) for v in request.env.values()) else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def reap(exits: dict[int, str]) -> None:
    """Collect every ended child and write its exit status where its job's reader looks."""
    while exits:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        if pid in exits:
            try:
                write_atomic(Path(exits.pop(pid)), json.dumps({"returncode": code}))
            except OSError:  # its run folder was removed: nobody is left to read it
                pass


def stop(signum: int, frame: object) -> None:
    """SIGTERM ends the launcher cleanly (its socket removed); its jobs run on."""
    raise SystemExit(0)


def serve(path: Path, idle: float = IDLE_SECONDS) -> Request | None:
    """Answer fork requests on `path` until idle for `idle` seconds with no child running.
    Returns only in a forked child, with the request it is to run."""
    preload()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, stop)
    launcher = os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = path.with_suffix(f".{launcher}")
    listener.bind(str(bound))
    listener.listen(16)
    os.replace(bound, path)  # appears whole: a client never reaches a half-ready launcher
    own = path.stat().st_ino
    path.with_suffix(".starting").unlink(missing_ok=True)
    print(f"warm launcher {os.getpid()} listening on {path}", flush=True)
    exits: dict[int, str] = {}
    last = time.monotonic()
    try:
        while exits or time.monotonic() - last < idle:
            ready, _, _ = select.select([listener.fileno(), wake_r], [], [], 1.0)
            if wake_r in ready:
                os.read(wake_r, 512)
            reap(exits)
            if exits or listener.fileno() in ready:
                last = time.monotonic()
            if listener.fileno() not in ready:
                continue
            conn, _ = listener.accept()
            with conn:
                request = received(conn)
                if request is None:
                    continue
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
                    listener.close()
                    return request
                exits[pid] = request.exit_file
                try:
                    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                except OSError:  # the asker has gone, as if it died just after starting a job
                    pass
    finally:
        if os.getpid() == launcher:  # not in a forked child on its way out of here
            if path.exists() and path.stat().st_ino == own:  # not a newer launcher's socket
                path.unlink(missing_ok=True)
            path.with_suffix(".log").unlink(missing_ok=True)  # it started: nothing to read
    return None


def become(request: Request) -> None:
    """Turn this forked child into the job's process, as if started fresh: its own
    session, the queue's environment, folder and log, the job's command line."""
    # `ps` and /proc name the job, not the launcher (before the environment is replaced:
    # the title takes the room of the launcher's own)
    setproctitle(shlex.join(request.argv))
    os.setsid()
    log = os.open(request.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(devnull)
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    sys.orig_argv = list(request.argv)  # what a re-exec (pipeline.core.heap) starts again
    sys.argv = [request.argv[0], *request.argv[3:]]


def main() -> None:
    request = serve(Path(sys.argv[1]))
    if request is not None:
        become(request)
        runpy.run_module("pipeline", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
