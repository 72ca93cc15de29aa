from django import template

from monitoring.redaction import cmdline_for

register = template.Library()


@register.filter
def shown_to(cmdline: str, user) -> str:
    """{{ process.cmdline|shown_to:user }}: redacted unless `user` may see it whole."""
    return cmdline_for(user, cmdline)
