"""The public surface: ``anthropic_rx.__all__`` names exactly what the package exports."""

from __future__ import annotations

import inspect

import anthropic_rx


def _public_names() -> set[str]:
    """Module-level names of the package, less submodules and underscore names."""
    return {
        name
        for name in dir(anthropic_rx)
        if not name.startswith("_") and not inspect.ismodule(getattr(anthropic_rx, name))
    }


def test_all_is_sorted() -> None:
    assert anthropic_rx.__all__ == sorted(anthropic_rx.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(anthropic_rx.__all__) == len(set(anthropic_rx.__all__))


def test_every_public_member_is_in_all() -> None:
    missing = _public_names() - set(anthropic_rx.__all__)
    assert not missing


def test_every_name_in_all_exists() -> None:
    absent = [name for name in anthropic_rx.__all__ if not hasattr(anthropic_rx, name)]
    assert not absent


def test_all_names_only_public_members_and_the_version() -> None:
    assert set(anthropic_rx.__all__) - _public_names() == {"__version__"}
    assert isinstance(anthropic_rx.__version__, str)


def test_exported_classes_and_functions_are_defined_in_the_package() -> None:
    for name in anthropic_rx.__all__:
        member = getattr(anthropic_rx, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert member.__module__ == "anthropic_rx", name
            assert member.__name__ == name, name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from anthropic_rx import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(anthropic_rx.__all__)
