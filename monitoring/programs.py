"""Which program a process runs: one key for every run of it, and groups by that key.

`program_key` is pure (no Django): the ingest stores it on each Process, a data
migration fills it for old rows, and the process page and table join and group on it.

The key is what stays the same when the program restarts:

- a kernel thread (no command line, no executable) is its name without the per-CPU
  or per-device part: "kworker/0:1-events" and "ksoftirqd/3" are "kworker" and
  "ksoftirqd";
- a process title a program set for itself ("postgres: alice shop 10.0.0.5(5432)
  idle", "sshd: bob@pts/0", "nginx: worker process", "[celeryd: w@h:MainProcess]")
  is the word before the colon;
- an interpreter (python, node, java, ruby, perl, php, a shell, uv run / uvx) is the
  interpreter's basename, then what it runs: `-m module`, `-jar app.jar`, a main
  class, `-c` / `-e` without the code, or the script's basename (with the nearest
  telling directory when the basename says nothing, as main.py or index.js do),
  then up to two subcommand words ("manage.py runserver", "uvicorn app:app");
- anything else is the basename of its argv[0] (else of its executable).

What varies between runs is left out: options and their values, numbers, ports,
pids, addresses, paths of temporary directories, UUIDs and hex ids, a jar's version.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_LENGTH = 255  # Process.program's max_length
MAX_WORDS = 2  # subcommand words kept after an interpreter's script or module

PYTHON = re.compile(r"^(?:python|pypy)[\d.]*[dmu]*$")
NODE = re.compile(r"^(?:node|nodejs)$")
RUBY = re.compile(r"^ruby[\d.]*$")
PERL = re.compile(r"^perl[\d.]*$")
PHP = re.compile(r"^php[\d.]*(?:-cli)?$")
SHELL = re.compile(r"^(?:sh|bash|dash|zsh|ksh|mksh|ash|fish)$")
JAVA = re.compile(r"^java$")

# Options of each interpreter that take the next argument as their value.
VALUED = {
    "python": {"-W", "-X", "-Q", "--check-hash-based-pycs"},
    "node": {"-r", "--require", "--import", "--loader", "--experimental-loader", "--title",
             "--env-file", "--inspect-port", "--conditions", "-C"},
    "java": {"-cp", "-classpath", "--class-path", "-p", "--module-path", "--add-opens",
             "--add-exports", "--add-modules", "--add-reads", "--upgrade-module-path",
             "--patch-module", "--limit-modules"},
    "ruby": {"-I", "-r", "-C", "-E", "--encoding"},
    "perl": {"-I", "-M", "-m"},
    "php": {"-c", "-d", "-z", "-t", "-S"},
    "shell": {"-o", "+o", "-O", "+O", "--rcfile", "--init-file"},
    "uv": {"--with", "--with-requirements", "--with-editable", "--python", "-p", "--project",
           "--directory", "--env-file", "--extra", "--group", "--package", "--from",
           "--index", "--index-url", "--extra-index-url", "--find-links", "-f", "--cache-dir",
           "--config-file", "--only-group", "--no-group", "--isolated-from"},
}  # fmt: skip

# Options after which the next argument is what runs: its name is kept, not its text.
RUNS_MODULE = {"python": {"-m"}, "java": {"-jar", "-m", "--module"}}
RUNS_CODE = {
    "python": {"-c"},
    "node": {"-e", "--eval", "-p", "--print"},
    "ruby": {"-e"},
    "perl": {"-e", "-E"},
    "php": {"-r"},
    "shell": {"-c"},
}

# Script names that say nothing alone, and directories that say nothing about which
# program a script belongs to.
GENERIC_SCRIPTS = re.compile(
    r"^(?:__main__|main|index|app|server|cli|run|start|wsgi|asgi|worker|bin)\.\w+$"
)
GENERIC_DIRS = {"", ".", "..", "bin", "sbin", "src", "lib", "dist", "build", "out", "app",
                "apps", "scripts", "usr", "local", "opt", "srv", "home", "tmp", "var",
                "node_modules", ".bin", "site-packages", "dist-packages"}  # fmt: skip

HEX_ID = re.compile(r"^(?=.*\d)[0-9a-f]{8,}$", re.I)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
WORD = re.compile(r"^[A-Za-z][\w:.-]{0,63}$")
# Words that announce a secret next: no subcommand word is kept from there on.
SECRET_WORD = re.compile(
    r"(?i)password|passwd|secret|token|api[-_]?key|access[-_]?key|private|credential"
    r"|auth|bearer"
)
TEMP_DIR = re.compile(r"^(?:tmp|temp)[\w.-]*$|^pip-|^pymp-|^\.?tmp", re.I)
KERNEL_SUFFIX = re.compile(r"[_-]\d+$")
JAR_VERSION = re.compile(r"-\d[\w.+-]*(?=\.jar$)")
TITLE = re.compile(r"^\[?([\w.@+-]+):(?:\s|$)")


def program_key(name: str, exe: str, cmdline: str) -> str:
    """The key that every run of the same program shares, at most 255 characters."""
    args = cmdline.split()
    if not args:
        if exe:
            return _cut(_basename(exe.removesuffix(" (deleted)")))
        return _cut(_kernel_thread(name))
    title = TITLE.match(cmdline.strip())
    if title:
        return _cut(title.group(1))
    return _cut(" ".join(_command(args)) or _basename(exe) or name)


def _cut(key: str) -> str:
    return key[:MAX_LENGTH]


def _kernel_thread(name: str) -> str:
    """ "kworker/u16:2-events_unbound" -> "kworker", "scsi_eh_0" -> "scsi_eh"."""
    head = name.strip().split("/", 1)[0]
    return KERNEL_SUFFIX.sub("", head) or head or name


def _basename(path: str) -> str:
    base = path.rstrip("/").rsplit("/", 1)[-1]
    return base.lstrip("-")  # a login shell's argv[0] is "-bash"


def _kind(base: str) -> str | None:
    for kind, pattern in (("python", PYTHON), ("node", NODE), ("java", JAVA), ("ruby", RUBY),
                          ("perl", PERL), ("php", PHP), ("shell", SHELL)):  # fmt: skip
        if pattern.match(base):
            return kind
    if base in ("uv", "uvx"):
        return base
    return None


def _command(args: list[str]) -> list[str]:
    """The key's words for one command: argv[0]'s basename and what it runs."""
    base = _basename(args[0])
    kind = _kind(base)
    rest = args[1:]
    if kind is None:
        return [base]
    if kind == "uvx":  # uvx [options] tool [subcommand]
        target, rest = _target(rest, "uv")
        return [base, *([_basename(target)] if target else []), *_words(rest)]
    if kind == "uv":  # uv run [options] command..., uv tool run [options] tool...
        if rest[:1] == ["tool"]:
            rest = rest[1:]
        if rest[:1] != ["run"]:
            return [base, *_words(rest[:1])]
        target, after = _target(rest[1:], "uv")
        if target is None:
            return [base, "run"]
        nested = _command([target, *after])
        if _kind(_basename(target)) is None:  # uv run ruff check: a tool and its subcommand
            nested += _words(after)
        return [base, "run", *nested]
    return [base, *_runs(kind, rest)]


def _target(args: list[str], kind: str) -> tuple[str | None, list[str]]:
    """The first argument that is not an option (nor an option's value), and the rest."""
    valued = VALUED.get(kind, set())
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith(("-", "+")) or arg in ("-", "+"):
            break
        i += 2 if arg in valued else 1
    if i >= len(args):
        return None, []
    return args[i], args[i + 1 :]


def _runs(kind: str, args: list[str]) -> list[str]:
    """What an interpreter runs, from its arguments."""
    valued = VALUED.get(kind, set())
    modules, code = RUNS_MODULE.get(kind, set()), RUNS_CODE.get(kind, set())
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith(("-", "+")) or arg in ("-", "+"):
            break
        if arg in code:
            return [arg]
        if arg in modules:
            if i + 1 >= len(args):
                return [arg]
            target = args[i + 1]
            shown = _jar(target) if arg == "-jar" else target
            return [arg, shown, *_words(args[i + 2 :])]
        # python -um pkg, perl -we 'code': a module or code flag ending a short cluster
        if kind == "python" and re.match(r"^-[a-zA-Z]*m$", arg) and len(arg) > 2:
            return _runs(kind, ["-m", *args[i + 1 :]])
        if kind in ("python", "perl", "ruby", "shell") and re.match(r"^-[a-zA-Z]*[ce]$", arg):
            flag = "-" + arg[-1]
            if flag in code:
                return [flag]
        i += 2 if arg in valued else 1
    if i >= len(args):
        return []
    script = args[i]
    if kind == "java":  # a main class: a dotted name, never variable
        return [script] if WORD.match(script) else []
    return [_script(script), *_words(args[i + 1 :])]


def _script(path: str) -> str:
    """A script's basename, with its nearest telling directory when the name is generic."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return path
    base = parts[-1]
    if not GENERIC_SCRIPTS.match(base):
        return base
    for directory in reversed(parts[:-1]):
        if directory.lower() in GENERIC_DIRS or _variable(directory) or TEMP_DIR.match(directory):
            continue
        return f"{directory}/{base}"
    return base


def _jar(path: str) -> str:
    return JAR_VERSION.sub("", _basename(path))


def _words(args: Iterable[str]) -> list[str]:
    """Leading subcommand words ("runserver", "app:app"): up to the first option,
    path, number or anything else that may vary between runs."""
    words = []
    for arg in args:
        if len(words) == MAX_WORDS or not WORD.match(arg) or _variable(arg):
            break
        if SECRET_WORD.search(arg):
            break
        words.append(arg)
    return words


def _variable(token: str) -> bool:
    """A number, port, pid, id or address: different in the next run."""
    return bool(
        re.search(r"\d{3,}", token)
        or HEX_ID.match(token)
        or UUID.search(token)
        or re.fullmatch(r"[\d.:]+", token)
    )


@dataclass
class ProgramGroup:
    """The processes of one program at one moment, summed like a Netdata apps chart."""

    program: str
    count: int = 0
    cpu_percent: float = 0.0
    rss: int = 0
    users: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


GROUP_SORTS = {"cpu": "cpu_percent", "mem": "rss", "name": "program", "count": "count"}


def program_of(process) -> str:
    """A process's stored program, or its key worked out now (rows stored before)."""
    return process.program or program_key(process.name, process.exe, process.cmdline)


def group_by_program(rows: Iterable, sort: str = "-cpu") -> list[ProgramGroup]:
    """Rows of one moment (anything with .process, .cpu_percent and .rss: raw samples
    or rollups) grouped by their process's program, with summed CPU and memory.

    `sort` is one of GROUP_SORTS, "-" first for descending; anything else sorts by
    CPU, biggest first. Ties go by program."""
    groups: dict[str, ProgramGroup] = {}
    for row in rows:
        process = row.process
        key = program_of(process)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ProgramGroup(program=key)
        group.count += 1
        group.cpu_percent += row.cpu_percent or 0.0
        group.rss += row.rss or 0
        group.pids.append(process.pid)
        if process.username and process.username not in group.users:
            group.users.append(process.username)
    result = sorted(groups.values(), key=lambda g: g.program)
    key = sort.lstrip("-")
    attribute = GROUP_SORTS.get(key, "cpu_percent")
    descending = sort.startswith("-") if key in GROUP_SORTS else True
    result.sort(key=lambda g: getattr(g, attribute), reverse=descending)
    for group in result:
        group.users.sort()
        group.pids.sort()
    return result
