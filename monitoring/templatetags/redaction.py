from django import template

from monitoring.redaction import cmdline_for

register = template.Library()


@register.filter
def shown_to(cmdline: str, user) -> str:
    """{{ process.cmdline|shown_to:user }}: redacted unless `user` may see it whole."""
    return cmdline_for(user, cmdline)


@register.filter
def short_cmdline(cmdline: str, limit: int = 72) -> str:
    """The program's basename, then its arguments, cut to `limit` characters: twenty
    "python3" rows differ only in what follows, and a full path hides it."""
    program, _, args = cmdline.strip().partition(" ")
    short = " ".join(filter(None, (program.rsplit("/", 1)[-1], args.strip())))
    return short if len(short) <= limit else short[: limit - 1] + "…"
