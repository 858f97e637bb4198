import importlib
import inspect

import pytest

MODULES = [
    "shared.alerts",
    "shared.apikeys",
    "shared.backup",
    "shared.config",
    "shared.credentials",
    "shared.crypto",
    "shared.events",
    "shared.http",
    "shared.keyservice",
    "shared.logs",
    "shared.runtime",
    "shared.scheduler",
    "shared.store",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)

    missing = [item for item in module.__all__ if not hasattr(module, item)]

    assert missing == []


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_public_definitions(name: str) -> None:
    module = importlib.import_module(name)

    defined = {
        item
        for item, value in vars(module).items()
        if not item.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    }

    assert defined - set(module.__all__) == set()
