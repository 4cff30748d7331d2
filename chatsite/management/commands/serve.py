import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Start Daphne on BIND_ADDRESS:PORT (the settings), serving HTTP and WebSockets."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=None, help="Overrides the PORT setting.")

    def handle(self, *args, port=None, **options):
        port = port or settings.PORT
        # Answers left `streaming` by a process that died are marked interrupted (keeping their
        # last checkpoint) before anyone can open them and wait for a stream that will never come.
        from conversations.recovery import generation_recover_on_start

        interrupted = generation_recover_on_start()
        if interrupted:
            self.stdout.write(f"Marked {interrupted} unfinished answer(s) as interrupted.")
        # API calls left `running` the same way would hold their users' answer slots.
        from conversations.api.services import api_call_interrupt_dead, api_call_interrupt_stale
        from conversations.eventlog import event_log_is_shared

        if event_log_is_shared():
            api_call_interrupt_stale()
        else:
            api_call_interrupt_dead(alive_before=None)
        options = ["--proxy-headers"] if settings.PROXY_HEADERS else []
        processes = settings.SERVER_PROCESSES
        address = f"http://{settings.BIND_ADDRESS}:{port}/"
        if processes > 1:
            from django.db import connection

            from chatsite.supervisor import Supervisor, listening_sockets

            try:
                sockets = listening_sockets(settings.BIND_ADDRESS, port, processes)
            except OSError as exc:
                # The port is taken, or the address is not one of this machine's.
                raise CommandError(f"Cannot listen on {address}: {exc.strerror or exc}") from None
            # This process only watches over the servers from here on: its pool of PostgreSQL
            # connections (scale mode is on PostgreSQL) would stay open for nothing.
            connection.close()
            connection.close_pool()
            self.stdout.write(f"Serving on {address} with {processes} processes", ending="\n")
            self.stdout.flush()
            supervisor = Supervisor(sockets=sockets, count=processes, daphne_options=options)
            sys.exit(supervisor.run())
        self.stdout.write(f"Serving on {address}", ending="\n")
        self.stdout.flush()
        # exec, not a child process: signals from the terminal or a supervisor reach Daphne itself.
        # Daphne, with request limits it has no options for (chatsite.server).
        argv = [sys.executable, "-m", "chatsite.server", "--bind", settings.BIND_ADDRESS]
        argv += ["--port", str(port), *options, "chatsite.asgi:application"]
        os.execv(sys.executable, argv)
