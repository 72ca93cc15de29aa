"""Regular expressions that users write: the process filter `q`, watches, alert rules.

They run under RE2, whose matching time grows linearly with the text whatever the
pattern is. Python's backtracking `re` took seconds to forever on `^(a+)+$` or
`(.+)+#` against ordinary command lines, and stalled every request of the server
meanwhile. RE2 refuses what it cannot match in linear time (backreferences,
lookarounds); that refusal is the clear error users get. No Django here: the
sampling core uses this module too.
"""

import re2

MAX_LENGTH = 500  # the longest stored pattern (WatchedProcess.pattern)

# A yes/no is all we ask, so no capture groups: RE2 can then answer with its DFA.
_OPTIONS = re2.Options()
_OPTIONS.never_capture = True
_OPTIONS.log_errors = False  # a refused pattern is the user's error, reported to them

Regex = re2._Regexp  # what re2.compile returns; the module has no public name for it


class PatternError(ValueError):
    pass


def compile_pattern(pattern: str) -> Regex:
    """The pattern compiled by RE2, or PatternError saying why not."""
    if len(pattern) > MAX_LENGTH:
        raise PatternError(f"A regular expression may have at most {MAX_LENGTH} characters.")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise PatternError(
            f"Not a valid regular expression (RE2 syntax: no backreferences or "
            f"lookarounds): {reason}"
        ) from None


def matches_process(regex: Regex, name: str, cmdline: str) -> bool:
    """The one rule of the process filter and of alert rules: the pattern is searched
    in the name and, separately, in the command line; a match in either counts."""
    return regex.search(name) is not None or regex.search(cmdline) is not None


def exactly(text: str) -> str:
    """A pattern matching `text` and nothing else, every special character escaped."""
    return "^" + re2.escape(text) + "$"
