import inspect

import shared.credentials


def test_all_names_exist() -> None:
    missing = [
        name
        for name in shared.credentials.__all__
        if not hasattr(shared.credentials, name)
    ]

    assert missing == []


def test_all_lists_public_classes() -> None:
    exported = set(shared.credentials.__all__)
    public = {
        name
        for name, value in vars(shared.credentials).items()
        if not name.startswith("_") and inspect.isclass(value)
    }

    assert public - exported == set()
