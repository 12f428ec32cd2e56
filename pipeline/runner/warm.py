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

A command typed at a terminal (`cstudio revise …`) runs *attached* where a launcher of its
environment is already up (the studio starts one): the launcher forks it onto the asker's
own stdin, stdout and stderr, the asker forwards the signals it gets (Ctrl-C reaches the
command) and exits with the command's exit status, and if the asker dies the launcher kills
the command with it, as if the two were one process. With no launcher up it runs in its own
process as before (a command line never leaves a launcher behind).
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
from dataclasses import asdict, dataclass, field
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
ATTACHED_ENV = "CSTUDIO_WARM_ATTACHED"  # set in a command forked attached: it runs there
RANK_ENV = "WORLD_SIZE"  # one process of a data-parallel run: `accelerate launch` placed it
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GPU_DEVICES = ("/dev/nvidia0", "/dev/kfd", "/dev/dxg")
LIMITS = ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_RSS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_FSIZE")
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
    folder, log file, and the file its exit status goes to; or (`attached`) a command that
    runs on the asker's stdin, stdout and stderr (sent with the request) and whose exit
    status goes back on the connection."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: str = ""
    exit_file: str = ""
    attached: bool = False
    # the signals the asker ignores: a process it started would inherit that (a command run
    # in the background of a script ignores Ctrl-C), so the forked one does too
    ignored: list[int] = field(default_factory=lambda: ignored_signals())


def ignored_signals() -> list[int]:
    return [int(s) for s in FORWARDED if signal.getsignal(s) == signal.SIG_IGN]


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
    priority, limits (see `confines`) and the variables libraries read while importing
    (IMPORT_TIME_ENV)."""
    kept = sorted(
        (k, v) for k, v in env.items() if k.startswith(IMPORT_TIME_ENV) and k not in SET_BY_TORCH
    )
    parts = [sys.executable, str(Path(__file__).resolve()), os.getpriority(os.PRIO_PROCESS, 0)]
    return hashlib.sha256(json.dumps([parts, confines(), kept]).encode()).hexdigest()[:20]


def confines() -> list:
    """What a forked process inherits from its launcher, not from its asker, that bounds the
    work: the control group (a batch scheduler's job, a systemd scope), the CPUs it may use
    and its resource limits. A command asked from inside other bounds gets another launcher,
    so it never escapes them (a Slurm job's command is not run inside another job's)."""
    if sys.platform != "linux":  # no launcher serves there
        return []
    import resource

    group = Path("/proc/self/cgroup").read_text()
    limits = [resource.getrlimit(getattr(resource, name)) for name in LIMITS]
    return [group, sorted(os.sched_getaffinity(0)), limits]


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


def run_attached(args: list[str]) -> int | None:
    """Run `python -m pipeline ARGS` forked from the launcher of this environment, on this
    process's stdin, stdout and stderr; its exit status (128 + N when signal N ended it), or
    None when it is to run in this process (no launcher up, switched off, this process is
    itself such a command or one rank of a data-parallel run)."""
    env = dict(os.environ)
    command = [sys.executable, "-m", "pipeline", *args]
    if ATTACHED_ENV in env or RANK_ENV in env or not enabled(command, env):
        return None
    request = Request(command, env, os.getcwd(), attached=True)
    try:
        conn = connected(env)
    except OSError:
        return None
    with conn:
        try:
            socket.send_fds(conn, [json.dumps(asdict(request)).encode() + b"\n"], [0, 1, 2])
            reader = conn.makefile()
            pid = int(json.loads(reader.readline())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # refused before it forked: nothing runs there
        conn.settimeout(None)
        previous = {
            s: signal.signal(s, lambda signum, _: signal_group(pid, signum))
            for s in FORWARDED
            if s not in request.ignored  # ignored here: ignored there too, as in one process
        }
        try:
            line = reader.readline()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    try:
        code = int(json.loads(line)["returncode"])
    except (ValueError, KeyError, TypeError):
        wait_for(pid)
        print(
            "error: the warm launcher ended before the command did; its exit status is unknown",
            file=sys.stderr,
        )
        return 1
    return code if code >= 0 else 128 - code


def signal_group(pid: int, signum: int) -> None:
    """Pass a signal on to a forked command's process group (it leads its own session)."""
    try:
        os.killpg(pid, signum)
    except OSError:  # it has ended
        pass


def wait_for(pid: int) -> None:
    """Until a process that is not this one's child has ended."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


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


def received(conn: socket.socket) -> tuple[Request, list[int]] | None:
    """The request on a connection from this user's process (the folder is private too) and
    the descriptors that came with it (an attached command's stdin, stdout, stderr); None
    for anything else, which the launcher ignores."""
    if peer(conn)[1] != os.getuid():
        return None
    fds: list[int] = []
    try:
        conn.settimeout(10)
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while data and not data.endswith(b"\n"):
            more = conn.recv(1 << 16)
            if not more:
                break
            data += more
        request = Request(**json.loads(data))
        valid = (
            request.argv[:3] == [sys.executable, "-m", "pipeline"]
            and all(isinstance(v, str) for v in request.env.values())
            and len(fds) == (3 if request.attached else 0)
        )
        if valid:
            return request, fds
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    for fd in fds:
        os.close(fd)
    return None


def reap(exits: dict[int, str], attached: dict[int, socket.socket]) -> None:
    """Collect every ended child and give its exit status to whoever reads it: a job's
    `exit.json`, an attached command's asker."""
    while exits or attached:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        line = json.dumps({"returncode": os.waitstatus_to_exitcode(status)})
        try:
            if pid in exits:
                write_atomic(Path(exits.pop(pid)), line)
            elif pid in attached:
                with attached.pop(pid) as conn:
                    conn.sendall(line.encode() + b"\n")
        except OSError:  # its run folder was removed, or its asker has gone
            pass


def hung_up(attached: dict[int, socket.socket], ready: list[int]) -> None:
    """An asker whose connection closed before its command ended has died (it waits on the
    connection until then): the command dies with it, as one process would."""
    for pid, conn in list(attached.items()):
        if conn.fileno() in ready:
            signal_group(pid, signal.SIGKILL)
            conn.close()
            attached[pid] = conn  # reaped as usual; the closed connection takes no status


def stop(signum: int, frame: object) -> None:
    """SIGTERM ends the launcher cleanly (its socket removed); its jobs run on."""
    raise SystemExit(0)


def serve(path: Path, idle: float = IDLE_SECONDS) -> tuple[Request, list[int]] | None:
    """Answer fork requests on `path` until idle for `idle` seconds with no child running.
    Returns only in a forked child, with the request it is to run and its descriptors."""
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
    attached: dict[int, socket.socket] = {}
    last = time.monotonic()
    try:
        while exits or attached or time.monotonic() - last < idle:
            askers = [c.fileno() for c in attached.values() if c.fileno() >= 0]
            ready, _, _ = select.select([listener.fileno(), wake_r, *askers], [], [], 1.0)
            if wake_r in ready:
                os.read(wake_r, 512)
            reap(exits, attached)
            hung_up(attached, ready)
            if exits or attached or listener.fileno() in ready:
                last = time.monotonic()
            if listener.fileno() not in ready:
                continue
            conn, _ = listener.accept()
            got = received(conn)
            if got is None:
                conn.close()
                continue
            request, fds = got
            sys.stdout.flush()
            led_r, led_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                # its own session before its pid is answered: a cancel sent to the group
                # at once reaches it
                os.setsid()
                os.close(led_r)
                os.close(led_w)
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.close(wake_r)
                os.close(wake_w)
                listener.close()
                conn.close()
                for other in attached.values():
                    other.close()
                return request, fds
            for fd in fds:
                os.close(fd)
            os.close(led_w)
            os.read(led_r, 1)  # end of file once the child leads its session (or died)
            os.close(led_r)
            try:
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            except OSError:  # the asker has gone, as if it died just after starting a job
                pass
            if request.attached:
                attached[pid] = conn
            else:
                exits[pid] = request.exit_file
                conn.close()
    finally:
        if os.getpid() == launcher:  # not in a forked child on its way out of here
            if path.exists() and path.stat().st_ino == own:  # not a newer launcher's socket
                path.unlink(missing_ok=True)
            path.with_suffix(".log").unlink(missing_ok=True)  # it started: nothing to read
    return None


def become(request: Request, fds: list[int]) -> None:
    """Turn this forked child (already leading its own session) into the job's process, as
    if started fresh: the queue's environment, folder and log (or the asker's stdin, stdout
    and stderr), the job's command line."""
    for signum in FORWARDED:  # as a process the asker started would have them
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, signal.SIG_IGN if signum in request.ignored else default)
    # `ps` and /proc name the job, not the launcher (before the environment is replaced:
    # the title takes the room of the launcher's own)
    setproctitle(shlex.join(request.argv))
    if not request.attached:
        log = os.open(request.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fds = [os.open(os.devnull, os.O_RDONLY), log, os.dup(log)]
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):  # a terminal shows each line as it is written
        stream.reconfigure(line_buffering=stream.isatty())  # type: ignore[union-attr]
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    if request.attached:
        os.environ[ATTACHED_ENV] = "1"
    sys.orig_argv = list(request.argv)  # what a re-exec (pipeline.core.heap) starts again
    sys.argv = [request.argv[0], *request.argv[3:]]


def main() -> None:
    served = serve(Path(sys.argv[1]))
    if served is not None:
        become(*served)
        runpy.run_module("pipeline", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
