"""What the worker does first, while it is still the grader's (trusted) code: leave the
grader's user when the grader is root. Standard library only (it runs before anything else
in the worker, see `protocol.worker_command`).

`enter(spec)` with spec = {"user": "nobody", "hide": [folders], "workdir": folder}:

1. In a mount namespace of its own (Linux, root, where the kernel allows it), every folder
   in `hide` is covered by an empty read-only tmpfs: the reference package (its answers
   and the hidden tests) and the grader's private folder are not there for the submission,
   whatever their permissions. /tmp, /var/tmp and /dev/shm are fresh empty tmpfs (the
   worker's own folder bound back), so it has nowhere shared to write. A folder on the way
   to the interpreter that the sandbox user may not enter (pyenv under a 0700 /root, say)
   is covered by a tmpfs it may enter, in which only the paths the worker needs are bound
   back.
2. Then it becomes the unprivileged user (groups dropped first): from there on the
   submission cannot write any file of root's, signal or trace the grader, or undo the
   mounts.

It returns what it achieved, which the grader reports: "user+namespace", "user" (no mount
namespace: hidden files are protected by their permissions only), "process" (the grader
is not root, or was told to keep its user: the submission runs as the grader's user, in
its own process), or "refused" (root, but the user change is impossible: the worker does
not run the submission at all rather than run it as root).
"""

import os
import signal
import sys


def _libc():
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    return libc, ctypes


_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = (
    1, 2, 4, 4096, 16384, 1 << 18)


def _mount(libc, ctypes, source, target, fstype, flags, data=None) -> None:
    enc = (lambda s: None if s is None else str(s).encode())
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _blocked_dirs(path: str) -> list[str]:
    """The folders on the way to `path` (itself excluded) that others may not enter."""
    out, cur = [], "/"
    for part in [p for p in os.path.realpath(path).split("/") if p][:-1]:
        cur = os.path.join(cur, part)
        try:
            if not os.stat(cur).st_mode & 0o001:
                out.append(cur)
        except OSError:
            break
    return out


def needed_paths(workdir: str) -> list[str]:
    """What the worker must reach: the interpreter, its library folders, the submission."""
    paths = {os.path.realpath(sys.executable), os.path.realpath(workdir)}
    for p in [sys.prefix, sys.base_prefix] + [p for p in sys.path if p]:
        if os.path.isdir(p):
            paths.add(os.path.realpath(p))
    return sorted(paths)


def _cover(libc, ctypes, folder: str, keep: list[str], mode: str) -> None:
    """Mount an empty tmpfs on `folder` (permissions `mode`) and bind back each path of
    `keep` below it, at the same place: the rest of what was there is gone. The kept paths
    are held by O_PATH descriptors across the covering (bound from /proc/self/fd)."""
    inside = sorted({os.path.realpath(p) for p in keep
                     if os.path.realpath(p).startswith(folder.rstrip("/") + "/")})
    # A kept path inside another kept path comes along with it.
    inside = [p for p in inside if not any(p.startswith(q + "/") for q in inside if q != p)]
    fds = [(p, os.open(p, os.O_PATH | os.O_CLOEXEC)) for p in inside]
    try:
        _mount(libc, ctypes, "tmpfs", folder, "tmpfs", _MS_NOSUID | _MS_NODEV,
               f"size=64m,mode={mode}")
        for p, fd in fds:
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(p, mode=0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(p), mode=0o755, exist_ok=True)
                open(p, "w").close()
            _mount(libc, ctypes, f"/proc/self/fd/{fd}", p, None, _MS_BIND | _MS_REC)
    finally:
        for _, fd in fds:
            os.close(fd)


def enter(spec: dict) -> tuple[str, str]:
    """Apply `spec` (see the module's docstring); returns (isolation, why not more)."""
    user = spec.get("user")
    if not user or os.geteuid() != 0:
        return "process", "the grader is not root, so the submission runs as its user"
    import pwd

    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return "refused", (f"there is no user {user!r} on this machine: the grader will "
                           f"not run a submission as root")
    workdir = spec["workdir"]
    namespace, why = False, ""
    try:
        libc, ctypes = _libc()
        if libc.unshare(_CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        _mount(libc, ctypes, None, "/", None, _MS_REC | _MS_PRIVATE)
        needed = needed_paths(workdir)
        # Folders on the way to the interpreter that the user may not enter: made passable,
        # with only what the worker needs inside.
        for blocker in sorted({b for p in needed for b in _blocked_dirs(p)}, key=len):
            _cover(libc, ctypes, blocker, needed, "0711")
        # Scratch space of its own: the shared temporary folders are fresh and empty, so
        # nothing it writes outside its folder outlives it or reaches anyone else.
        for folder in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
            if os.path.isdir(folder) and not os.path.islink(folder):
                _cover(libc, ctypes, folder, needed, "1777")
        for folder in spec.get("cover", []):
            if os.path.isdir(folder) and not any(os.path.realpath(p) == os.path.realpath(
                    folder) or os.path.realpath(folder).startswith(os.path.realpath(p) + "/")
                                                 for p in needed):
                _cover(libc, ctypes, folder, needed, "0755")
        for folder in spec.get("hide", []):
            if os.path.isdir(folder):
                _mount(libc, ctypes, "tmpfs", folder, "tmpfs",
                       _MS_RDONLY | _MS_NOSUID | _MS_NODEV, "size=4k,mode=0555")
        namespace = True
    except OSError as err:
        why = f"no mount namespace ({err}): hidden files are protected by permissions only"
    blocked = [p for p in needed_paths(workdir) if _blocked_dirs(p)]
    if blocked and not namespace:
        return "refused", (f"user {user!r} cannot reach {blocked[0]} and {why}: the "
                           f"grader will not run a submission as root")
    _keeper()
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
    os.environ["HOME"] = workdir
    return ("user+namespace" if namespace else "user"), why


_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


def _prctl(option: int, value: int) -> None:
    libc, _ = _libc()
    libc.prctl(option, value, 0, 0, 0)


def _children() -> list[int]:
    """The processes whose parent is this one (orphans come here: it is a subreaper)."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == me:
                out.append(int(entry))
    return out


def _keeper() -> None:
    """Fork: the child returns (and becomes the worker); this process stays root and keeps
    it. As a child subreaper it inherits every process the worker leaves behind (a double
    fork, setsid), and when the worker ends -- or on SIGTERM from the grader, or when the
    grader dies -- it kills them all before it exits with the worker's status. So nothing
    the submission started outlives its worker."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # it re-raises the worker's signal
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    child = os.fork()
    if child == 0:
        return
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    status = 0
    while True:
        try:
            pid, st = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            break
        if pid == child:
            status = st
            for _ in range(100):  # the worker is gone: everything it left goes too
                left = _children()
                if not left:
                    break
                for p in left:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                while True:
                    try:
                        if os.waitpid(-1, os.WNOHANG)[0] == 0:
                            break
                    except ChildProcessError:
                        break
            break
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
