"""Sources of the ELT flow: one module per source, each with its settings model.

A module here that defines a subclass of ``flows.sources.base.Source`` is a source: the ``elt``
flow's ``source`` parameter accepts its settings (``{"kind": "<name>", ...}``), so adding a source
is adding one file. Modules must import only pydantic and the standard library at the top (they
are imported whenever the flow is); dlt and drivers are imported inside ``dlt_source``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any, Union

from pydantic import Field

from flows.sources.base import Source


def source_classes() -> dict[str, type[Source]]:
    """kind -> settings class, for every source module of this package."""
    for module in pkgutil.iter_modules(__path__):
        if module.name not in {"base"} and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    classes = {}
    for cls in Source.__subclasses__():
        kind = cls.model_fields["kind"].default
        if not isinstance(kind, str) or kind in classes:
            raise TypeError(f"{cls.__module__}.{cls.__name__} must set a unique default for `kind`")
        classes[kind] = cls
    return classes


# The flow parameter's type: one of the sources' settings, told apart by `kind`.
SourceSettings: Any = Annotated[
    Union[tuple(source_classes().values())],  # noqa: UP007 - a Union built from the registry
    Field(discriminator="kind"),
]
