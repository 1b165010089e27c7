"""Install a plugin zip with Krita's OWN importer: the code behind Tools ▸ Scripts ▸ Import Python
Plugin from File (`plugin_importer.PluginImporter`, shipped with every Krita), run outside Krita.

Run it with the Python of the Krita under test (the host's for Krita 5, the chroot's for Krita 6):
    python3 import_plugin.py IMPORTER_PY PLUGIN_ZIP RESOURCES_DIR
Prints one JSON line: {"imported": [names]} or {"error": "...", "type": "..."}; exit 1 on error.
"""

import builtins
import importlib.util
import json
import sys

# Krita 6's importer does `from builtins import i18n` (Krita's translation hook); Krita 5's calls it
# on its error path only. Outside Krita it must exist, untranslated.
builtins.i18n = lambda text: text  # type: ignore[attr-defined]


def main(importer_py: str, plugin_zip: str, resources: str) -> int:
    # Loaded by path: the package's __init__ imports `krita`, which only exists inside Krita.
    spec = importlib.util.spec_from_file_location("krita_plugin_importer", importer_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        imported = module.PluginImporter(plugin_zip, resources, lambda plugin: True).import_all()
    except module.PluginImportError as exc:
        print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        return 1
    print(json.dumps({"imported": [p["name"] for p in imported]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
