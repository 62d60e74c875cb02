# Copyright (c) mmc2f contributors. All rights reserved.
"""What the analysis tools (``tools/analysis/``) are made of: the model of a
config built for measuring (:mod:`.config_model`) and the benchmark
(:mod:`.benchmark`)."""
