import io
import json
import re

from django.core.management import call_command

HASHED = re.compile(r"\.[0-9a-f]{12}\.m?js$")


def test_every_script_module_imports_the_others_under_their_hashed_names(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", interactive=False, stdout=io.StringIO())
    manifest = json.loads((tmp_path / "staticfiles.json").read_text())["paths"]

    scripts = [name for name in manifest if name == "chat.js" or name.startswith("js/")]
    assert "js/socket.mjs" in scripts and "js/outbox.mjs" in scripts
    imports = 0
    for name in scripts:
        hashed = tmp_path / manifest[name]
        for url in re.findall(r'from "(\./[^"]+)"', hashed.read_text()):
            imports += 1
            assert HASHED.search(url), (manifest[name], url)
            assert (hashed.parent / url).resolve().is_file(), (manifest[name], url)
    assert imports >= 20
