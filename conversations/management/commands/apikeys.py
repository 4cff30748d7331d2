"""API keys from the command line: `apikeys create USERNAME --name NAME [--store-conversations]`,
`apikeys list [USERNAME]`, `apikeys revoke KEY_ID`.

`create` prints the new key, and only the key, on stdout (so `KEY=$(manage.py apikeys create
...)` works); it is never shown again. Everything else it says goes to stderr.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from conversations.api.services import api_key_create, api_key_revoke
from conversations.models import ApiKey


class Command(BaseCommand):
    help = "Create, list and revoke API keys for the OpenAI-compatible API (/v1/)."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Create a key and print it once.")
        create.add_argument("username")
        create.add_argument("--name", required=True, help="What the key is for, e.g. `laptop`.")
        create.add_argument(
            "--store-conversations",
            action="store_true",
            help="Also save the key's calls as conversations in the user's history.",
        )
        listing = actions.add_parser("list", help="Show keys (of one user, or everyone's).")
        listing.add_argument("username", nargs="?")
        revoke = actions.add_parser("revoke", help="Revoke a key by its id (see `list`).")
        revoke.add_argument("key_id", type=int)

    def handle(self, *args, **options):
        action = options["action"]
        if action == "create":
            self._create(options)
        elif action == "list":
            self._list(options.get("username"))
        else:
            self._revoke(options["key_id"])

    def _user(self, username: str):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user called {username!r}.")
        return user

    def _create(self, options) -> None:
        user = self._user(options["username"])
        name = " ".join(options["name"].split())
        if not name:
            raise CommandError("--name must not be empty.")
        created = api_key_create(
            user=user, name=name, store_conversations=options["store_conversations"]
        )
        self.stderr.write(
            f"Created key {created.row.pk} ({created.row.prefix}…) for {user.get_username()}; "
            "it is shown only now:"
        )
        self.stdout.write(created.key)

    def _list(self, username: str | None) -> None:
        rows = ApiKey.objects.select_related("user").order_by("user__username", "-created_at")
        if username:
            rows = rows.filter(user=self._user(username))
        rows = list(rows)
        if not rows:
            self.stdout.write("No API keys.")
            return
        for row in rows:
            used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never"
            state = "revoked" if row.revoked else "active"
            stored = ", stores conversations" if row.store_conversations else ""
            self.stdout.write(
                f"{row.pk}\t{row.user.get_username()}\t{row.name}\t{row.prefix}…\t"
                f"created {row.created_at.isoformat(timespec='seconds')}\tlast used {used}\t"
                f"{state}{stored}"
            )

    def _revoke(self, key_id: int) -> None:
        row = ApiKey.objects.filter(pk=key_id).first()
        if row is None:
            raise CommandError(f"No API key with id {key_id}.")
        if row.revoked:
            self.stdout.write(f"Key {key_id} was already revoked.")
            return
        api_key_revoke(api_key=row)
        self.stdout.write(f"Revoked key {key_id} ({row.name}, {row.user.get_username()}).")
