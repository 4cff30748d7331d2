import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "On the very first run (no superuser yet), create the superuser 'admin' with a random "
        "password and print it once. Only its hash is stored."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username="admin", email="", password=password)
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "  Created the administrator account (shown only this once):",
                    "    username: admin",
                    f"    password: {password}",
                    "  Change it under /admin/ or with `manage.py changepassword admin`.",
                    "",
                ]
            )
        )
