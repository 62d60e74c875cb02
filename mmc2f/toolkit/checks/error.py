# Copyright (c) mmc2f contributors. All rights reserved.


class ConfigCheckError(ValueError):
    """A config, its data or its model that a check refuses; the message
    names the key, what it says, and the fix. The tools print it alone, with
    no traceback."""
