"""The sandbox worker: runs inside firejail on the system python, standard library only.

Not imported by the trusted process: its source is sent to `python3 -I -S -c BOOTSTRAP` on stdin, so nothing of the
host's virtualenv needs to be visible inside the sandbox. Protocol, one JSON object per line:

    host -> worker  {"init": {...limits, banned modules...}}            once, first
    host -> worker  {"id": 7, "program": "...", "call": "((1,), {})", "timeout": 5.0, "seed": 123}
    host -> worker  {"id": 8, "program": "...", "args": "range(3), 'a-b'.split('-')", "timeout": 5.0, "seed": 9}
    worker -> host  {"id": 7, "status": "ok", "output": "[1, 2]", "detail": null, "wall": 0.001, "cpu": 0.001}

Each request runs in a freshly forked child (new process group, rlimits, stdio on /dev/null, only the result pipe
open), so nothing a program does survives into the next one. The worker enforces the wall-clock limit, kills the
child's process group, and inside its own PID namespace also kills anything the child left behind.
"""

import builtins
import gc
import json
import os
import resource
import select
import signal
import sys
import time

LITERAL_TYPES = (int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset)
# Every builtin the static checks ban by name, so a name the checks let through (they resolve scopes) finds nothing.
SAFE_BUILTIN_REMOVALS = (
    "open exec eval compile input breakpoint help exit quit globals locals vars getattr setattr delattr memoryview "
    "id __loader__ __spec__"
).split()
# Names the host's repr of call arguments may use beyond literals (set(), frozenset({1}), float('inf') -> inf).
CALL_NAMES = {
    "__builtins__": {},
    "set": set,
    "frozenset": frozenset,
    "inf": float("inf"),
    "nan": float("nan"),
    "infj": complex(0, float("inf")),
    "nanj": complex(0, float("nan")),
}
CONFIG = {}
TASK_BUILTINS = {}
STATUSES = ("ok", "error", "not_literal", "too_large", "no_f")


def main():
    stdin = sys.stdin.buffer
    out = sys.stdout.buffer
    first = json.loads(stdin.readline())
    CONFIG.update(first["init"])
    TASK_BUILTINS.update(_task_builtins())  # built once here: copying it in every child costs page faults
    # Set once here and inherited by every child, so a child's set-up is a few system calls. Only the CPU limit is
    # per child: it counts the worker's own CPU time too. SIGPIPE: a child (and the worker, if the host is gone)
    # dies on a closed pipe instead of raising; Python itself starts with it ignored.
    _set_limits(_inherited_limits())
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    CONFIG["devnull"] = os.open("/dev/null", os.O_RDWR)
    CONFIG["perturb"] = _aslr_off()
    if CONFIG.get("undumpable"):
        _set_undumpable()
    gc.collect()
    gc.freeze()  # children then never touch (and copy) the worker's objects for garbage collection
    out.write(json.dumps({"ready": True, "uid": os.getuid(), "pid1": _pid1_name()}).encode() + b"\n")
    out.flush()
    for line in stdin:
        req = json.loads(line)
        res = execute(req)
        out.write(json.dumps(res).encode() + b"\n")
        out.flush()


def execute(req):
    start = time.monotonic()
    try:
        # Compiling runs none of the program, and the arguments are the host's repr of plain values: both are done
        # here, so the child pays no page faults for the compiler (its copy of the arguments is its own to mutate).
        code = compile(req["program"], "<program>", "exec")
        if req.get("args") is not None:
            # An input written as an expression (checked by the host): compiled here, evaluated by the child in the
            # program's namespace after the program ran, as `f(<args>)` would be. The newline ends a comment.
            call = compile("__azr_call__(" + req["args"] + "\n)", "<input>", "eval")
        else:
            call = eval(req["call"], dict(CALL_NAMES))
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError, NameError, TypeError) as exc:
        return {
            "id": req["id"],
            "status": "error",
            "output": None,
            "detail": _describe_exception(exc),
            "wall": round(time.monotonic() - start, 6),
            "cpu": 0.0,
        }
    rfd, wfd = os.pipe()
    pid = _fork_retrying()
    if pid == 0:
        os.close(rfd)
        try:
            child(req, code, call, wfd)
        except BaseException:
            os._exit(70)
        os._exit(0)
    os.close(wfd)
    timeout = float(req["timeout"])
    renice_at = CONFIG.get("deprioritize_after_s") or 0
    limit = CONFIG["max_output_chars"] * 6 + 4096  # JSON escaping can grow text up to 6x
    buf, need, timed_out, reniced, too_large = b"", None, False, False, False
    while True:
        left = start + timeout - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        wait = left
        if renice_at and not reniced:
            wait = min(left, max(0.0, start + renice_at - time.monotonic()))
        ready, _, _ = select.select([rfd], [], [], wait)
        if not ready:
            if renice_at and not reniced and time.monotonic() - start >= renice_at:
                _renice(pid)
                reniced = True
            continue
        data = os.read(rfd, 65536)
        if not data:
            break
        buf += data
        if need is None and len(buf) >= 8:
            need = int.from_bytes(buf[:8], "big")
            if need > limit:
                too_large = True
                break
        if need is not None and len(buf) >= 8 + need:
            break  # complete: don't wait for EOF, which a leftover grandchild could hold off
    os.close(rfd)
    _kill_group(pid)
    _, status, usage = os.wait4(pid, 0)
    _reap_leftovers()
    wall = time.monotonic() - start
    cpu = usage.ru_utime + usage.ru_stime
    base = {"id": req["id"], "wall": round(wall, 6), "cpu": round(cpu, 6)}
    if timed_out:
        return dict(base, status="timeout", output=None, detail="time limit of %gs exceeded" % timeout)
    if too_large:
        return dict(base, status="too_large", output=None, detail="result larger than the output limit")
    try:
        if need is None or len(buf) < 8 + need:
            raise ValueError("incomplete result")
        fields = buf[8 : 8 + need].decode("utf-8", "surrogatepass").split("\x00", 2)
        if len(fields) != 3 or fields[0] not in STATUSES:
            raise ValueError("malformed result")
    except ValueError:
        return dict(base, status="crashed", output=None, detail=_describe_exit(status))
    ok = fields[0] == "ok"
    res = {"status": fields[0], "output": fields[2] if ok else None, "detail": None if ok else fields[1]}
    res.update(base)
    return res


def child(req, code, call, wfd):
    gc.disable()  # short-lived: collecting would only copy the parent's pages
    os.setsid()
    devnull = CONFIG["devnull"]
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, wfd)
    os.closerange(wfd + 1, 65536)
    cpu = CONFIG["cpu_limit_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    if CONFIG["perturb"]:
        _perturb(int(req.get("seed", 0)))
    status, output, detail = run_program(code, call)
    # A tiny framing instead of JSON: fewer pages touched in the child (each costs a copy-on-write fault).
    data = "\x00".join((status, detail or "", output or "")).encode("utf-8", "surrogatepass")
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
        n = os.write(wfd, view)
        view = view[n:]


def run_program(code, call):
    """Define and call f; return (status, output, detail). Runs in the child only."""
    max_out = CONFIG["max_output_chars"]
    try:
        glb = {"__name__": "__azr_task__", "__builtins__": TASK_BUILTINS}
        exec(code, glb)
        f = glb.get("f")
        if not callable(f):
            return "no_f", None, "the program defines no callable f"
        if isinstance(call, type(code)):
            glb["__azr_call__"] = _capture
            args, kwargs = eval(call, glb)
        else:
            args, kwargs = call
        value = f(*args, **kwargs)
        problem = _literal_problem(value, max_out)
        if problem:
            return "not_literal", None, problem
        text = repr(value)
        if len(text) > max_out:
            return "too_large", None, "output of %d characters > limit %d" % (len(text), max_out)
        # The host parses this text again as a literal: what does not round-trip (a recursive list) fails there.
        return "ok", text, None
    except BaseException as exc:  # SystemExit, KeyboardInterrupt and all: the task is invalid, the child reports it
        return "error", None, _describe_exception(exc)


def _capture(*args, **kwargs):
    return args, kwargs


def _literal_problem(value, max_out):
    # Iterative walk with exact type checks: subclasses could rig __repr__/__eq__; size bounds the work.
    stack, seen = [value], 0
    while stack:
        v = stack.pop()
        seen += 1
        if seen > max_out:
            return "return value too large"
        t = type(v)
        if t not in LITERAL_TYPES:
            return "return value is not a plain literal: contains %s" % t.__name__
        if t is float and v != v:
            return "return value contains nan"
        if t is float and v in (float("inf"), float("-inf")):
            return "return value contains inf"
        if t in (list, tuple, set, frozenset):
            stack.extend(v)
        elif t is dict:
            stack.extend(v.keys())
            stack.extend(v.values())
    return None


def _task_builtins():
    names = dict(vars(builtins))
    if CONFIG.get("guard_builtins", True):
        for name in SAFE_BUILTIN_REMOVALS:
            names.pop(name, None)
        names["__import__"] = _guarded_import
    return names


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    top = name.split(".")[0]
    if level or top in CONFIG["banned_modules"] or top.startswith("_"):
        raise ImportError("module %r is not allowed" % name)
    return __import__(name, globals, locals, fromlist, level)


def _inherited_limits():
    mem = CONFIG["memory_mb"] * 1024 * 1024
    limits = [
        (resource.RLIMIT_AS, (mem, mem)),
        (resource.RLIMIT_FSIZE, (CONFIG["max_file_bytes"],) * 2),
        (resource.RLIMIT_NOFILE, (CONFIG["max_open_files"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if CONFIG.get("limit_processes", True):
        limits.append((resource.RLIMIT_NPROC, (CONFIG["max_processes"],) * 2))
    return limits


def _set_limits(limits):
    for which, value in limits:
        resource.setrlimit(which, value)


def _aslr_off():
    # With address-space randomisation (the kernel default, 2), every worker's heap already sits at its own random
    # address, so id()- or address-dependent output differs between the two workers of a determinism check.
    try:
        with open("/proc/sys/kernel/randomize_va_space") as fh:
            return fh.read().strip() != "2"
    except OSError:
        return True


def _perturb(seed):
    # Without address randomisation: a different heap layout and allocation history per execution, so id()- or
    # address-dependent output shows up as nondeterminism between the two validation runs.
    junk = [object() for _ in range(seed % 997)]
    junk.append(bytearray(seed % 4093))
    _perturb.keep = junk


def _renice(pid):
    # Not SCHED_IDLE: a starved process group dies slowly when killed on a busy machine (a fork bomb's members
    # linger for seconds), and nice 19 already leaves a loop ~1.5% of a core against normal-priority work.
    try:
        os.setpriority(os.PRIO_PGRP, pid, 19)
    except OSError:
        pass


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _reap_leftovers():
    # Inside our own PID namespace (firejail), kill(-1) reaches exactly what the child left behind: daemonized
    # grandchildren, escaped process groups. Never outside one: there it would hit every process of the user.
    if CONFIG.get("own_pid_namespace"):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _fork_retrying():
    # A fork bomb elsewhere may hold the sandbox user's process quota for a moment: wait it out briefly.
    for attempt in range(50):
        try:
            return os.fork()
        except BlockingIOError:
            time.sleep(0.01 * (attempt + 1))
    return os.fork()


def _pid1_name():
    # The host checks this: firejail runs programs UNSANDBOXED when it refuses a user, so it must be verified.
    try:
        with open("/proc/1/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _set_undumpable():
    # Keeps same-user children from reading /proc/<worker>/fd or ptrace-attaching to the worker.
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:
        pass


def _describe_exit(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = {9: "SIGKILL (memory, CPU or process limit)", 24: "SIGXCPU (CPU time limit)", 11: "SIGSEGV"}.get(
            sig, "signal %d" % sig
        )
        return "program crashed: killed by %s" % name
    return "program exited with status %d before returning" % os.WEXITSTATUS(status)


def _describe_exception(exc):
    try:
        text = "%s: %s" % (type(exc).__name__, exc)
    except BaseException:
        text = type(exc).__name__
    return text[:300]


if __name__ == "__main__":
    main()
