# Copyright (c) mmc2f contributors. All rights reserved.
"""The error of a model that the export does not cover."""


class ExportError(ValueError):
    """A module that cannot be exported: names it and says why."""

    def __init__(self, module: str, reason: str) -> None:
        super().__init__(f'cannot export {module}: {reason}')
