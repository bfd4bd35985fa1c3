"""Find a ``durably.App`` from ``module:attribute``, ``module``, ``path/to/file.py[:attribute]``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from .errors import InvalidInput


def load_app(spec: str):
    from .app import App

    if not spec or not isinstance(spec, str):
        raise InvalidInput("no app given: use module:attribute (e.g. myproject.jobs:app) or a .py file")
    target, _, attr = spec.partition(":")
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise InvalidInput(f"cannot load app {spec!r}: no such file {target!r}")
        name = os.path.splitext(os.path.basename(path))[0]
        sys.path.insert(0, os.path.dirname(path))
        modname = f"_durably_app_{name}"
        s = importlib.util.spec_from_file_location(modname, path)
        assert s and s.loader
        module = importlib.util.module_from_spec(s)
        sys.modules[modname] = module
        try:
            s.loader.exec_module(module)
        except Exception as exc:
            raise InvalidInput(f"cannot load app {spec!r}: {type(exc).__name__}: {exc}") from exc
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise InvalidInput(f"cannot load app {spec!r}: no module named {exc.name!r}") from None
        except Exception as exc:
            raise InvalidInput(f"cannot load app {spec!r}: {type(exc).__name__}: {exc}") from exc
    if attr:
        obj = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise InvalidInput(f"cannot load app {spec!r}: module {target!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        if callable(obj) and not isinstance(obj, App):
            obj = obj()
        if not isinstance(obj, App):
            raise InvalidInput(f"cannot load app {spec!r}: {attr!r} is a {type(obj).__name__}, not a durably.App")
        return _unopened(obj, spec)
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) != 1:
        raise InvalidInput(f"cannot load app {spec!r}: found {len(apps)} durably.App objects; name one as {target}:attribute")
    return _unopened(apps[0], spec)


def _unopened(app, spec: str):
    """The app, unless importing its module already used it (the command could no longer
    apply its settings: --database-url, --env)."""
    if app.opened:
        raise InvalidInput(f"cannot load app {spec!r}: importing it already opened app {app.id!r}'s store "
                           "(a module-level app.send() or app.store?); send from a function your code calls, "
                           "not when the module is imported")
    return app
