"""`ptracker manage addhost NAME [--label KEY=VALUE]…`: a host for an agent, and its token.

For configuration management: the token is printed once, on its own line, and is
not stored (only its hash is). `--new-token` replaces the token of an existing host.
"""

from django.core.management.base import BaseCommand, CommandError

from monitoring.models import Host


def parse_label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key.strip():
        raise CommandError(f"--label takes KEY=VALUE, got {value!r}")
    return key.strip(), val.strip()


class Command(BaseCommand):
    help = "Add a host that an agent reports for, and print its agent token once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument(
            "--new-token",
            action="store_true",
            help="the host exists: give it a new token (the old one stops working)",
        )

    def handle(self, name: str, label: list[str], new_token: bool, **options) -> None:
        labels = dict(parse_label(item) for item in label)
        existing = Host.objects.filter(name=name).first()
        if existing and not new_token:
            raise CommandError(f"a host named {name!r} exists; --new-token replaces its token")
        if existing:
            secret = existing.set_agent_token()
            existing.labels = {**existing.labels, **labels}
            existing.save(update_fields=["agent_token_hash", "agent_token_prefix", "labels"])
        else:
            if not name.strip() or len(name) > 100:
                raise CommandError("a host name has 1 to 100 characters")
            _, secret = Host.add_remote(name, labels)
        self.stdout.write(secret)
