"""Constitution choices shared by the tabs: names as being edited, and saved versions."""
from __future__ import annotations

from pipeline.constitution import Constitution
from pipeline.store import Store


def constitution_choices(store: Store) -> list[str]:
    """Constitutions as being edited (by name), then every saved version (name@N)."""
    return store.names() + [f"{r.name}@{r.version}" for r in store.all_versions()]


def resolve_choice(store: Store, choice: str) -> Constitution:
    """`name@N` is that saved version; a bare name is the constitution as being edited."""
    name, _, version = choice.rpartition("@")
    return store.version(name, int(version)).constitution if version.isdigit() and name \
        else store.working(choice)


def default_choice(store: Store) -> str | None:
    names = constitution_choices(store)
    return "harmless-helpful" if "harmless-helpful" in names else (names or [None])[0]
