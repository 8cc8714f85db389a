"""Opening user-given paths safely (DESIGN §5): regular files only, never an ``open()`` that can block.

A FIFO, a device (/dev/zero, a tty), a directory or a socket given where a file is expected is refused at
once with a ValueError naming the path: the path is opened with O_NONBLOCK (so opening a FIFO returns at
once instead of waiting for a writer) and the *descriptor* is checked with fstat, so a path swapped
between a check and the open cannot slip through. Text is read line by line with a bound on each line
(``MAX_LINE_CHARS``), so a stream without newlines cannot grow memory without limit.
"""
import io
import os
import stat

MAX_LINE_CHARS = 16 * 1024 * 1024     # longest accepted line (header or data row) of a text file

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def kind(mode):
    """A few words naming the file type of an ``st_mode`` ("a FIFO (named pipe)", "a directory", ...)."""
    return next((text for test, text in _KINDS if test(mode)), "not a regular file")


def check_regular(path, what="file"):
    """``path`` as a str if it names an existing regular file (symlinks followed); ValueError naming it
    when it is a FIFO, device, directory or socket; FileNotFoundError when it does not exist."""
    path = os.fspath(path)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise ValueError(f"{what} {path}: is {kind(mode)}, not a regular file")
    return path


def open_regular(path, what="file"):
    """``path`` opened for binary reading, after checking through the descriptor that it is a regular file.

    Never blocks: O_NONBLOCK makes opening a FIFO return at once (it is then refused), and is cleared
    again before the file object is returned. FileNotFoundError for a missing path; ValueError naming
    ``what`` and the path for anything that is not a regular file (including a socket, which cannot be
    opened at all).
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise exc from None
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what} {path}: is {kind(mode)}, not a regular file") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what} {path}: is {kind(mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_text(path, what="file"):
    """A regular file opened as UTF-8 text for the csv module (``newline=""``, a BOM skipped)."""
    raw = open_regular(path, what)
    try:
        return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    except BaseException:
        raw.close()
        raise


def bounded_lines(fh, path, limit=None):
    """The lines of text file ``fh``, each read with a bound: ValueError naming ``path`` and the line
    number for a line longer than ``limit`` characters (default ``MAX_LINE_CHARS``)."""
    limit = MAX_LINE_CHARS if limit is None else limit
    number = 0
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit:
            raise ValueError(f"{path}, line {number}: longer than {limit:,} characters (the limit for "
                             f"one line of a text file); is this really a CSV file?")
        yield line


def output_target(path, what="output file"):
    """The path an atomic write of ``path`` must replace: ``path`` itself when it is new or a regular file,
    the file a symlink points to (followed, so the link stays a link) when that is new or regular.

    ValueError naming the path, never a blocking open, for a target that is a FIFO, a character or block
    device, a directory or a socket (replacing one would swap /dev/null or a pipe a reader waits on for a
    regular file), for a dangling symlink (the write would create a file wherever it points), and for a
    missing directory, and for a path ending in a separator. TypeError for a path that is not a str / os.PathLike.
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{what}: the path is empty")
    if path.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep)):
        raise ValueError(f"cannot write the {what} {path}: the path ends in {path[-1]!r}, so it names a "
                         f"directory; give a file name")
    target = path
    if os.path.islink(path):
        target = os.path.realpath(path)
        if not os.path.lexists(target):
            raise ValueError(f"cannot write the {what} {path}: it is a dangling symbolic link (to {target})")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ValueError(f"cannot write the {what} {path}: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):
        via = f" (a symbolic link to {target})" if target != path else ""
        raise ValueError(f"cannot write the {what} {path}{via}: it is {kind(mode)}, not a regular file; "
                         f"give a new file name or a regular file to replace")
    # the directory as given, not os.path.abspath's: that collapses "missing/.." lexically, while the
    # system resolves ".." only through a directory that exists (so the write would fail after the work)
    directory = os.path.dirname(target) or os.curdir
    if not os.path.isdir(directory):
        dots = ".." in directory.replace(os.altsep or os.sep, os.sep).split(os.sep)
        raise ValueError(f"cannot write the {what} {path}: the directory {directory} does not exist"
                         + (" (the system resolves '..' through the directory before it, which must exist)"
                            if dots else ""))
    check_name_length(target, what, path)
    return target


# what io.atomic_write adds to a file's name for its temporary: ".{name}.{pid}.{16 hex}.tmp"
def temporary_suffix_bytes():
    return len(f"..{os.getpid()}.{'0' * 16}.tmp")


def check_name_length(target, what="output file", shown=None):
    """ValueError when the last component of ``target`` is too long for its file system once the atomic
    writer's temporary suffix is added (ENAMETOOLONG would otherwise come only at the write, after the work)."""
    shown = target if shown is None else shown
    name = os.path.basename(target)
    directory = os.path.dirname(target) or os.curdir
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    if not isinstance(limit, int) or limit <= 0:
        limit = 255
    size = len(os.fsencode(name))
    room = limit - temporary_suffix_bytes()
    if size > room:
        raise ValueError(f"cannot write the {what} {shown}: its file name is {size} bytes, longer than the "
                         f"{room} bytes this file system allows here ({limit} less the {limit - room} of the "
                         f"writer's temporary-file suffix); give a shorter name")
